"""The models Tessera ships with, each with a snapshot of its input schema.

The snapshots let the options form render before a token is set; the app replaces them with the
live schema from the API once it can. They follow the models' published inputs (names, defaults,
ranges and order) in the shape Cog publishes: enums are separate schemas referenced through allOf.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelPreset:
    ref: str
    label: str
    kind: str  # "text-to-image" | "inpaint" | "caption"
    description: str
    image_field: str | None
    mask_field: str | None
    mask_polarity: str | None  # "white-repaints" | "black-repaints" | None (no mask input)
    size_multiple: int  # image sides the model works in without rescaling
    max_pixels: int  # largest image area worth sending
    openapi_schema: dict[str, Any] = field(compare=False, repr=False)

    @property
    def can_inpaint(self) -> bool:
        return self.mask_field is not None


def _title(name: str) -> str:
    return name.replace("_", " ").title()  # what Cog generates: "num_outputs" -> "Num Outputs"


def _openapi(inputs: list[tuple[str, dict[str, Any]]], *, required: list[str], output: dict[str, Any]) -> dict:
    """A Cog-shaped openapi schema; x-order follows the list order, "choices" become enum schemas."""
    properties: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    for order, (name, spec) in enumerate(inputs):
        prop = dict(spec)
        choices = prop.pop("choices", None)
        if choices is not None:
            enums[name] = {"title": name, "description": "An enumeration.", "enum": choices,
                           "type": "integer" if isinstance(choices[0], int) else "string"}
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        properties[name] = {"title": _title(name), **prop, "x-order": order}
    schemas = {"Input": {"type": "object", "title": "Input", "required": required, "properties": properties},
               "Output": {"title": "Output", **output}, **enums}
    return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": {},
            "components": {"schemas": schemas}}


IMAGE_LIST = {"type": "array", "items": {"type": "string", "format": "uri"}}
IMAGE_URL = {"type": "string", "format": "uri"}
TEXT = {"type": "string"}

ASPECT_RATIOS = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]
WHITE_REPAINTS_MASK = ("A black-and-white image that describes the part of the image to inpaint. Black areas will "
                       "be preserved while white areas will be inpainted.")


def _flux_prompt() -> tuple[str, dict]:
    return "prompt", {"type": "string", "description": "Prompt for generated image"}


def _flux_aspect_ratio() -> tuple[str, dict]:
    return "aspect_ratio", {"choices": ASPECT_RATIOS, "default": "1:1",
                            "description": "Aspect ratio for the generated image"}


def _num_outputs() -> tuple[str, dict]:
    return "num_outputs", {"type": "integer", "default": 1, "minimum": 1, "maximum": 4,
                           "description": "Number of outputs to generate"}


def _flux_steps(default: int, maximum: int, advice: str) -> tuple[str, dict]:
    return "num_inference_steps", {
        "type": "integer", "default": default, "minimum": 1, "maximum": maximum,
        "description": f"Number of denoising steps. {advice}, and lower number of steps produce lower quality "
                       "outputs, faster.",
    }


def _flux_guidance(default: float, maximum: float) -> tuple[str, dict]:
    return "guidance", {"type": "number", "default": default, "minimum": 0, "maximum": maximum,
                        "description": "Guidance for generated image"}


def _seed() -> tuple[str, dict]:
    return "seed", {"type": "integer", "description": "Random seed. Set for reproducible generation"}


def _flux_output_options() -> list[tuple[str, dict]]:
    return [
        ("output_format", {"choices": ["webp", "jpg", "png"], "default": "webp",
                           "description": "Format of the output images"}),
        ("output_quality", {"type": "integer", "default": 80, "minimum": 0, "maximum": 100,
                            "description": "Quality when saving the output images, from 0 to 100. 100 is best "
                                           "quality, 0 is lowest quality. Not relevant for .png outputs"}),
        ("disable_safety_checker", {"type": "boolean", "default": False,
                                    "description": "Disable safety checker for generated images."}),
    ]


def _go_fast() -> tuple[str, dict]:
    return "go_fast", {"type": "boolean", "default": True,
                       "description": "Run faster predictions with model optimized for speed (currently fp8 "
                                      "quantized); disable to run in original bf16"}


def _megapixels(choices: list[str]) -> tuple[str, dict]:
    return "megapixels", {"choices": choices, "default": "1",
                          "description": "Approximate number of megapixels for generated image"}


def _lora_options() -> list[tuple[str, dict]]:
    return [
        ("lora_weights", {"type": "string",
                          "description": "Load LoRA weights. Supports Replicate models in the format "
                                         "<owner>/<username> or <owner>/<username>/<version>, HuggingFace URLs in "
                                         "the format huggingface.co/<owner>/<model-name>, CivitAI URLs in the format "
                                         "civitai.com/models/<id>[/<model-name>], or arbitrary .safetensors URLs "
                                         "from the Internet. For example, 'fofr/flux-pixar-cars'"}),
        ("lora_scale", {"type": "number", "default": 1, "minimum": -1, "maximum": 3,
                        "description": "Determines how strongly the main LoRA should be applied. Sane results "
                                       "between 0 and 1 for base inference."}),
    ]


FLUX_SCHNELL = _openapi([
    _flux_prompt(),
    _flux_aspect_ratio(),
    _num_outputs(),
    _flux_steps(4, 4, "4 is recommended"),
    _seed(),
    *_flux_output_options(),
    _go_fast(),
    _megapixels(["1", "0.25"]),
], required=["prompt"], output=IMAGE_LIST)


def _flux_dev_inputs() -> list[tuple[str, dict]]:
    """FLUX.1 [dev]'s inputs; flux-dev-lora has the same ones and its LoRA options after them."""
    return [
        _flux_prompt(),
        _flux_aspect_ratio(),
        ("image", {"type": "string", "format": "uri",
                   "description": "Input image for image to image mode. The aspect ratio of your output will match "
                                  "this image"}),
        ("prompt_strength", {"type": "number", "default": 0.8, "minimum": 0, "maximum": 1,
                             "description": "Prompt strength when using img2img. 1.0 corresponds to full destruction "
                                            "of information in image"}),
        _num_outputs(),
        _flux_steps(28, 50, "Recommended range is 28-50"),
        _flux_guidance(3, 10),
        _seed(),
        *_flux_output_options(),
        _go_fast(),
        _megapixels(["1", "0.25"]),
    ]


FLUX_DEV = _openapi(_flux_dev_inputs(), required=["prompt"], output=IMAGE_LIST)

FLUX_FILL_DEV = _openapi([
    _flux_prompt(),
    ("image", {"type": "string", "format": "uri",
               "description": "The image to inpaint. Can contain alpha mask. If the image width or height are not "
                              "multiples of 32, they will be scaled to the closest multiple of 32. If the image "
                              "dimensions don't fit within 1440x1440, it will be scaled down to fit."}),
    ("mask", {"type": "string", "format": "uri", "description": WHITE_REPAINTS_MASK}),
    _num_outputs(),
    _flux_steps(28, 50, "Recommended range is 28-50"),
    _flux_guidance(30, 100),
    _seed(),
    ("megapixels", {"choices": ["1", "0.25", "match_input"], "default": "1",
                    "description": "Approximate number of megapixels for generated image. Use match_input to match "
                                   "the size of the input (with an upper limit of 1440x1440 pixels)"}),
    *_flux_output_options(),
    *_lora_options(),
], required=["prompt", "image"], output=IMAGE_LIST)

FLUX_FILL_PRO = _openapi([
    ("prompt", {"type": "string", "description": "Text prompt for image generation"}),
    ("image", {"type": "string", "format": "uri",
               "description": "The image to inpaint. Can contain an alpha mask. Must be jpeg, png, gif, or webp."}),
    ("mask", {"type": "string", "format": "uri",
              "description": WHITE_REPAINTS_MASK + " Must have the same size as image. Optional if you provide "
                                                   "an alpha mask in the original image. Must be jpeg, png, gif, or "
                                                   "webp."}),
    ("outpaint", {"choices": ["None", "Zoom out 1.5x", "Zoom out 2x", "Make square", "Left outpaint",
                              "Right outpaint", "Top outpaint", "Bottom outpaint"], "default": "None",
                  "description": "A quick option for outpainting an input image. Mask will be ignored if "
                                 "outpainting is selected."}),
    ("steps", {"type": "integer", "default": 50, "minimum": 15, "maximum": 50,
               "description": "Number of diffusion steps. Higher values yield finer details but increase "
                              "processing time."}),
    ("guidance", {"type": "number", "default": 60, "minimum": 1.5, "maximum": 100,
                  "description": "Controls the balance between adherence to the text prompt and image "
                                 "quality/diversity. Higher values make the output more closely match the prompt "
                                 "but may reduce overall image quality."}),
    _seed(),
    ("output_format", {"choices": ["jpg", "png"], "default": "jpg",
                       "description": "Output format for the generated image"}),
    ("safety_tolerance", {"type": "integer", "default": 2, "minimum": 1, "maximum": 6,
                          "description": "Safety tolerance, 1 is most strict and 6 is most permissive"}),
    ("prompt_upsampling", {"type": "boolean", "default": False,
                           "description": "Automatically modify the prompt for more creative generation"}),
], required=["image"], output=IMAGE_URL)

SDXL = _openapi([
    ("prompt", {"type": "string", "default": "An astronaut riding a rainbow unicorn", "description": "Input prompt"}),
    ("negative_prompt", {"type": "string", "default": "", "description": "Input Negative Prompt"}),
    ("image", {"type": "string", "format": "uri", "description": "Input image for img2img or inpaint mode"}),
    ("mask", {"type": "string", "format": "uri",
              "description": "Input mask for inpaint mode. Black areas will be preserved, white areas will be "
                             "inpainted."}),
    ("width", {"type": "integer", "default": 1024, "description": "Width of output image"}),
    ("height", {"type": "integer", "default": 1024, "description": "Height of output image"}),
    ("num_outputs", {"type": "integer", "default": 1, "minimum": 1, "maximum": 4,
                     "description": "Number of images to output."}),
    ("scheduler", {"choices": ["DDIM", "DPMSolverMultistep", "HeunDiscrete", "KarrasDPM", "K_EULER_ANCESTRAL",
                               "K_EULER", "PNDM"], "default": "K_EULER", "description": "scheduler"}),
    ("num_inference_steps", {"type": "integer", "default": 50, "minimum": 1, "maximum": 500,
                             "description": "Number of denoising steps"}),
    ("guidance_scale", {"type": "number", "default": 7.5, "minimum": 1, "maximum": 50,
                        "description": "Scale for classifier-free guidance"}),
    ("prompt_strength", {"type": "number", "default": 0.8, "minimum": 0, "maximum": 1,
                         "description": "Prompt strength when using img2img / inpaint. 1.0 corresponds to full "
                                        "destruction of information in image"}),
    ("seed", {"type": "integer", "description": "Random seed. Leave blank to randomize the seed"}),
    ("refine", {"choices": ["no_refiner", "expert_ensemble_refiner", "base_image_refiner"], "default": "no_refiner",
                "description": "Which refine style to use"}),
    ("high_noise_frac", {"type": "number", "default": 0.8, "minimum": 0, "maximum": 1,
                         "description": "For expert_ensemble_refiner, the fraction of noise to use"}),
    ("refine_steps", {"type": "integer",
                      "description": "For base_image_refiner, the number of steps to refine, defaults to "
                                     "num_inference_steps"}),
    ("apply_watermark", {"type": "boolean", "default": True,
                         "description": "Applies a watermark to enable determining if an image is generated in "
                                        "downstream applications. If you have other provisions for generating or "
                                        "deploying images safely, you can use this to disable watermarking."}),
    ("lora_scale", {"type": "number", "default": 0.6, "minimum": 0, "maximum": 1,
                    "description": "LoRA additive scale. Only applicable on trained models."}),
    ("replicate_weights", {"type": "string",
                           "description": "Replicate LoRA weights to use. Leave blank to use the default weights."}),
    ("disable_safety_checker", {"type": "boolean", "default": False,
                                "description": "Disable safety checker for generated images. This feature is only "
                                               "available through the API."}),
], required=[], output=IMAGE_LIST)

_SD_SIDES = list(range(64, 1025, 64))
SD_INPAINTING = _openapi([
    ("prompt", {"type": "string", "default": "a vision of paradise. unreal engine", "description": "Input prompt"}),
    ("image", {"type": "string", "format": "uri",
               "description": "Initial image to generate variations of. Will be resized to height x width"}),
    ("mask", {"type": "string", "format": "uri",
              "description": "Black and white image to use as mask for inpainting over the image provided. White "
                             "pixels are inpainted and black pixels are preserved"}),
    ("width", {"choices": _SD_SIDES, "default": 512,
               "description": "Width of output image. Maximum size is 1024x768 or 768x1024 because of memory limits"}),
    ("height", {"choices": _SD_SIDES, "default": 512,
                "description": "Height of output image. Maximum size is 1024x768 or 768x1024 because of memory "
                               "limits"}),
    ("prompt_strength", {"type": "number", "default": 0.8, "minimum": 0, "maximum": 1,
                         "description": "Prompt strength when providing the image. 1.0 corresponds to full "
                                        "destruction of information in init image"}),
    ("num_outputs", {"type": "integer", "default": 1, "minimum": 1, "maximum": 4,
                     "description": "Number of images to output. Higher number of outputs may OOM."}),
    ("num_inference_steps", {"type": "integer", "default": 25, "minimum": 1, "maximum": 500,
                             "description": "Number of denoising steps"}),
    ("guidance_scale", {"type": "number", "default": 7.5, "minimum": 1, "maximum": 20,
                        "description": "Scale for classifier-free guidance"}),
    ("seed", {"type": "integer", "description": "Random seed. Leave blank to randomize the seed"}),
], required=["image", "mask"], output=IMAGE_LIST)

FLUX_DEV_LORA = _openapi([*_flux_dev_inputs(), *_lora_options()], required=["prompt"], output=IMAGE_LIST)

# google/nano-banana (Gemini 2.5 Flash Image): several reference images in one array input, one URL out.
NANO_BANANA = _openapi([
    ("prompt", {"type": "string", "description": "A text description of the image you want to generate"}),
    ("image_input", {"type": "array", "items": {"type": "string", "format": "uri"}, "default": [],
                     "description": "Input images to transform or use as reference (supports multiple images)"}),
    ("aspect_ratio", {"choices": ["match_input_image", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16",
                                  "16:9", "21:9"], "default": "match_input_image",
                      "description": "Aspect ratio of the generated image"}),
    ("output_format", {"choices": ["jpg", "png"], "default": "jpg", "description": "Format of the output image"}),
], required=["prompt"], output=IMAGE_URL)

# black-forest-labs/flux-kontext-pro: edits one input image following the prompt; one URL out.
FLUX_KONTEXT_PRO = _openapi([
    ("prompt", {"type": "string", "description": "Text description of what you want to generate, or the "
                                                 "instruction on how to edit the given image."}),
    ("input_image", {"type": "string", "format": "uri",
                     "description": "Image to use as reference. Must be jpeg, png, gif, or webp."}),
    ("aspect_ratio", {"choices": ["match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5",
                                  "5:4", "21:9", "9:21", "2:1", "1:2"], "default": "match_input_image",
                      "description": "Aspect ratio of the generated image. Use 'match_input_image' to match the "
                                     "aspect ratio of the input image."}),
    ("prompt_upsampling", {"type": "boolean", "default": False, "description": "Automatic prompt improvement"}),
    _seed(),
    ("output_format", {"choices": ["jpg", "png"], "default": "png",
                       "description": "Output format for the generated image"}),
    ("safety_tolerance", {"type": "integer", "default": 2, "minimum": 0, "maximum": 6,
                          "description": "Safety tolerance, 0 is most strict and 6 is most permissive. 2 is currently "
                                         "the maximum allowed when input images are used."}),
], required=["prompt"], output=IMAGE_URL)

BLIP = _openapi([
    ("image", {"type": "string", "format": "uri", "description": "Input image"}),
    ("task", {"choices": ["image_captioning", "visual_question_answering", "image_text_matching"],
              "default": "image_captioning", "description": "Choose a task."}),
    ("question", {"type": "string",
                  "description": "Type question for the input image for visual question answering task."}),
    ("caption", {"type": "string", "description": "Type caption for the input image for image text matching task."}),
], required=["image"], output=TEXT)

PRESETS: list[ModelPreset] = [
    ModelPreset(
        ref="black-forest-labs/flux-schnell", label="FLUX.1 [schnell]", kind="text-to-image",
        description="The fastest FLUX model: good images in 4 steps.",
        image_field=None, mask_field=None, mask_polarity=None,
        size_multiple=16, max_pixels=1024 * 1024, openapi_schema=FLUX_SCHNELL,
    ),
    ModelPreset(
        ref="black-forest-labs/flux-dev", label="FLUX.1 [dev]", kind="text-to-image",
        description="Higher-quality FLUX, with image-to-image.",
        image_field="image", mask_field=None, mask_polarity=None,
        size_multiple=16, max_pixels=1024 * 1024, openapi_schema=FLUX_DEV,
    ),
    ModelPreset(
        ref="black-forest-labs/flux-dev-lora", label="FLUX.1 [dev] with LoRA", kind="text-to-image",
        description="FLUX.1 [dev] with a LoRA: a Replicate model, Hugging Face, CivitAI or .safetensors URL.",
        image_field="image", mask_field=None, mask_polarity=None,
        size_multiple=16, max_pixels=1024 * 1024, openapi_schema=FLUX_DEV_LORA,
    ),
    ModelPreset(
        ref="google/nano-banana", label="Nano Banana (Gemini 2.5 Flash Image)", kind="text-to-image",
        description="Google's image generator and editor; combines several input images following the prompt.",
        image_field=None, mask_field=None, mask_polarity=None,
        size_multiple=1, max_pixels=1024 * 1024, openapi_schema=NANO_BANANA,
    ),
    ModelPreset(
        ref="black-forest-labs/flux-kontext-pro", label="FLUX.1 Kontext [pro]", kind="text-to-image",
        description="Edits one input image following the prompt (or draws from the prompt alone).",
        image_field=None, mask_field=None, mask_polarity=None,
        size_multiple=16, max_pixels=1024 * 1024, openapi_schema=FLUX_KONTEXT_PRO,
    ),
    ModelPreset(
        # SDXL is trained at about 1 MP; well beyond ~2.4 MP it repeats subjects, so frames stop there.
        ref="stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc",
        label="Stable Diffusion XL", kind="text-to-image",
        description="SDXL 1.0 with img2img and inpainting, refiner and LoRA options.",
        image_field="image", mask_field="mask", mask_polarity="white-repaints",
        size_multiple=8, max_pixels=1536 * 1536, openapi_schema=SDXL,
    ),
    ModelPreset(
        # Its width/height choices stop at 1024, and the schema says 1024x768 is the most memory allows.
        ref="stability-ai/stable-diffusion-inpainting:e5a34f913de0adc560d20e002c45ad43a80031b62caacc3d84010c6b6a64870c",
        label="Stable Diffusion Inpainting", kind="inpaint",
        description="Classic Stable Diffusion inpainting at up to 1024x768.",
        image_field="image", mask_field="mask", mask_polarity="white-repaints",
        size_multiple=8, max_pixels=1024 * 768, openapi_schema=SD_INPAINTING,
    ),
    ModelPreset(
        # Rescales to multiples of 32 and down to fit 1440x1440; sending that already avoids resampling.
        ref="black-forest-labs/flux-fill-dev", label="FLUX.1 Fill [dev]", kind="inpaint",
        description="FLUX inpainting and outpainting; open weights, LoRA support.",
        image_field="image", mask_field="mask", mask_polarity="white-repaints",
        size_multiple=32, max_pixels=1440 * 1440, openapi_schema=FLUX_FILL_DEV,
    ),
    ModelPreset(
        ref="black-forest-labs/flux-fill-pro", label="FLUX.1 Fill [pro]", kind="inpaint",
        description="Black Forest Labs' best inpainting and outpainting.",
        image_field="image", mask_field="mask", mask_polarity="white-repaints",
        size_multiple=32, max_pixels=1440 * 1440, openapi_schema=FLUX_FILL_PRO,
    ),
    ModelPreset(
        # BLIP looks at 384x384; larger images only cost upload time.
        ref="salesforce/blip:2e1dddc8621f72155f24cf2e0adbde548458d3cab9f00c0139eea840d0ac4746",
        label="BLIP captions", kind="caption",
        description="Short captions (\"Caption: a dog on a couch\") for dataset tagging.",
        image_field="image", mask_field=None, mask_polarity=None,
        size_multiple=1, max_pixels=1024 * 1024, openapi_schema=BLIP,
    ),
]


def preset_for(ref: str) -> ModelPreset | None:
    """The preset with exactly this ref. Other versions of a model get none: their inputs and even their
    mask polarity may differ."""
    ref = (ref or "").strip()
    return next((preset for preset in PRESETS if preset.ref == ref), None)
