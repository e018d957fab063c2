"""The canvas generation job: read the frame, prepare it for the model, call Replicate, stage every output."""
from __future__ import annotations

from PIL import Image

from app.canvas import pipeline
from app.canvas.compose import InfillUnavailable
from app.canvas.modelchoice import DEFAULT_TEXT_MODEL, CanvasModel, canvas_model, carry_input, form_fields, polarity
from app.canvas.models import CanvasRequest, CanvasVariation
from app.canvas.staging import data_dir, request_dir, tile_store
from app.extensions import db
from app.gallery import save_generation
from app.jobs.predictions import follow_prediction
from app.replicate.catalog import client_from_config
from app.jobs.runner import JobFailed, job_run
from app.replicate.client import output_urls
from app.replicate.schema import Field, field_by_name

def run_canvas_generation(job_id: str) -> None:
    """The ``canvas.generate`` job: read the frame, prepare it (infill, mask blur), call the model and
    stage every output as a variation over the frame.

    params: ``request_id`` (a CanvasRequest: frame, painted mask, model and input). An empty frame
    asked of an inpainting model is drawn by DEFAULT_TEXT_MODEL instead. result: ``canvas_id``,
    ``request_id``, ``variations`` (CanvasVariation ids), ``generations`` (their outputs, kept out of
    the gallery). Fails with a message when the canvas was deleted, the infill cannot run, there is
    nothing to repaint, a text-only model gets a picture, or the model returns nothing. A retry
    follows the prediction already started and re-stages its outputs.
    """
    with job_run(job_id) as run:
        job = run.job
        request = db.session.get(CanvasRequest, job.params["request_id"])
        if request is None:
            raise JobFailed("The canvas was deleted.")
        run.progress(1, "Reading the frame")
        store = tile_store()
        head = store.head(request.canvas_id)
        region = store.read_region(request.canvas_id, request.x, request.y, request.width, request.height)
        root = data_dir()
        with Image.open(root / request.mask_path) as painted:
            try:
                prepared = pipeline.prepare_frame(region, painted, request.infill, request.mask_blur)
            except InfillUnavailable as exc:
                raise JobFailed(str(exc)) from None
        if pipeline.nothing_to_repaint(prepared):
            raise JobFailed(pipeline.NOTHING_TO_REPAINT)
        model, fields, _note = _model(job.user_id, request.model_ref)
        model_input = dict(request.model_input)
        if prepared.mode == "text" and model.kind != "text-to-image":
            # An inpainting model would only repaint a grey frame: draw from the prompt instead.
            model, fields, _note = _model(job.user_id, DEFAULT_TEXT_MODEL)
            model_input = carry_input(model_input, form_fields(model, fields))
        elif prepared.mode == "inpaint" and not model.can_inpaint:
            raise JobFailed(model.text_only_message)
        # A retry follows the prediction it already started, which was made from the first reading.
        if request.base_revision is None or not job.prediction_id:
            request.base_revision = head
        request.mode, request.model_used = prepared.mode, model.ref
        request.paste_mask_path = (request_dir(request) / "paste-mask.png").as_posix()
        pipeline.save_png(root / request.paste_mask_path, prepared.paste)
        _forget_variations(request)
        db.session.commit()

        run.progress(3, "Preparing the image for the model")
        with client_from_config() as client:
            sent_input = dict(model_input)
            sent_input.update(_size_input(model, fields, prepared))
            if prepared.mode == "inpaint":
                image, mask = pipeline.model_images(prepared, model.rules, polarity(job.user_id, model))
                sent_input[model.image_field] = client.file_input(pipeline.png_bytes(image), "image/png", "frame.png")
                sent_input[model.mask_field] = client.file_input(pipeline.png_bytes(mask), "image/png", "mask.png")
            prediction = follow_prediction(client, run, model.ref, sent_input)
            urls = output_urls(prediction.output)
            if not urls:
                raise JobFailed("The model finished but returned no images.")
            recorded_input = {name: value for name, value in sent_input.items()
                              if name not in (model.image_field, model.mask_field)}
            variation_ids, generation_ids = [], []
            request.output_count = len(urls)
            for index, url in enumerate(urls):
                if request.only_output is not None and index != request.only_output:
                    continue  # "make again" of one output: the model made all N from the seed, as before
                run.progress(90 + 10 * index // len(urls), f"Staging variation {index + 1} of {len(urls)}")
                generation = save_generation(client, url, job, model.ref, recorded_input, index, in_gallery=False)
                variation = _stage(request, region, prepared, generation.path, generation.id, index)
                variation_ids.append(variation.id)
                generation_ids.append(generation.id)
        job.result = {"canvas_id": request.canvas_id, "request_id": request.id, "variations": variation_ids,
                      "generations": generation_ids}
        count = len(variation_ids)
        job.message = f"{count} variation{'s' if count != 1 else ''} staged on the canvas"


def _model(user_id: int, ref: str) -> tuple[CanvasModel, list[Field], str | None]:
    try:
        return canvas_model(user_id, ref)
    except LookupError as exc:
        raise JobFailed(str(exc)) from None


def _size_input(model: CanvasModel, fields: list[Field], prepared: pipeline.PreparedFrame) -> dict:
    """Width/height (or the nearest aspect ratio) for models that take them; inpainting models get the
    size of the image sent."""
    width, height = prepared.paste.size
    values = {}
    if field_by_name(fields, "width") and field_by_name(fields, "height"):
        values["width"], values["height"] = model.rules.send_size(width, height)
    aspect = field_by_name(fields, "aspect_ratio")
    if aspect is not None and aspect.choices and prepared.mode == "text":
        ratio = pipeline.nearest_aspect_ratio(width, height, aspect.choices)
        if ratio is not None:
            values["aspect_ratio"] = ratio
    return values


def _stage(request: CanvasRequest, region: Image.Image, prepared: pipeline.PreparedFrame, output_path: str,
           generation_id: int, index: int) -> CanvasVariation:
    root = data_dir()
    with Image.open(root / output_path) as output:
        fitted = pipeline.fit_result(output, (request.width, request.height), prepared.mode)
    result, preview = pipeline.finish_variation(region, fitted, prepared.paste, request.colour_match,
                                               prepared.keep)
    folder = request_dir(request)
    variation = CanvasVariation(request_id=request.id, canvas_id=request.canvas_id, user_id=request.user_id,
                                generation_id=generation_id, output_index=index,
                                result_path=(folder / f"result-{index}.png").as_posix(),
                                preview_path=(folder / f"preview-{index}.webp").as_posix())
    pipeline.save_variation(root / variation.result_path, result, root / variation.preview_path, preview)
    db.session.add(variation)
    db.session.commit()
    return variation


def _forget_variations(request: CanvasRequest) -> None:
    """A retried job stages its outputs again: drop what an earlier attempt staged."""
    for variation in list(request.variations):
        for relpath in (variation.result_path, variation.preview_path):
            (data_dir() / relpath).unlink(missing_ok=True)
        db.session.delete(variation)
