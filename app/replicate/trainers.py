"""Trainers Tessera knows without asking Replicate: ostris/flux-dev-lora-trainer's schema, bundled.

The snapshot lets the "Train a LoRA" form render before a token is set (the live schema replaces it
once the API answers). It follows the trainer's published version: ``TrainingInput`` (the training
form), ``TrainingOutput`` (``{version, weights}``) and ``Input`` (what a trained version takes when it
is run, the same as black-forest-labs/flux-dev-lora). Source: the model's page and API schema on
replicate.com, as summarised in shared/reference/replicate-models-and-trainings.md.
"""
from __future__ import annotations

from typing import Any

FLUX_LORA_TRAINER = "ostris/flux-dev-lora-trainer"
# The version the snapshot describes; a training is created against the version whose schema was shown.
FLUX_LORA_TRAINER_VERSION = "26dce37af90b9d997eeb970d92e47de3064d46c300504ae376c75bef6a9022d2"


def _prop(order: int, title: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"title": title, **spec, "x-order": order}


_TRAINING_INPUTS: list[tuple[str, str, dict[str, Any]]] = [
    ("input_images", "Input Images", {
        "type": "string", "format": "uri",
        "description": "A zip file containing the images that will be used for training. We recommend a minimum "
                       "of 10 images. If you include captions, include them as one .txt file per image, e.g. "
                       "my-photo.jpg should have a caption file named my-photo.txt. If you don't include "
                       "captions, you can use autocaptioning (enabled by default)."}),
    ("trigger_word", "Trigger Word", {
        "type": "string", "default": "TOK",
        "description": "The trigger word refers to the object, style or concept you are training on. Pick a "
                       "string that isn't a real word, like TOK or something related to what's being trained, "
                       "like CYBRPNK. The trigger word you specify here will be associated with all images "
                       "during training. Then when you use your LoRA, you can include the trigger word in "
                       "prompts to help activate the LoRA."}),
    ("autocaption", "Autocaption", {
        "type": "boolean", "default": True,
        "description": "Automatically caption images using Llava v1.5 13B (only images without a caption file)"}),
    ("autocaption_prefix", "Autocaption Prefix", {
        "type": "string",
        "description": "Optional: Text you want to appear at the beginning of all your generated captions; for "
                       "example, 'a photo of TOK, '. You can include your trigger word in the prefix."}),
    ("autocaption_suffix", "Autocaption Suffix", {
        "type": "string",
        "description": "Optional: Text you want to appear at the end of all your generated captions; for "
                       "example, ' in the style of TOK'. You can include your trigger word in suffixes."}),
    ("steps", "Steps", {
        "type": "integer", "default": 1000, "minimum": 3, "maximum": 6000,
        "description": "Number of training steps. Recommended range 500-4000"}),
    ("lora_rank", "Lora Rank", {
        "type": "integer", "default": 16, "minimum": 1, "maximum": 128,
        "description": "Higher ranks take longer to train but can capture more complex features. Caption "
                       "quality is more important for higher ranks."}),
    ("optimizer", "Optimizer", {
        "type": "string", "default": "adamw8bit",
        "description": "Optimizer to use for training. Supports: prodigy, adam8bit, adamw8bit, lion8bit, adam, "
                       "adamw, lion, adagrad, adafactor."}),
    ("batch_size", "Batch Size", {
        "allOf": [{"$ref": "#/components/schemas/batch_size"}], "default": 1, "description": "Batch size"}),
    ("resolution", "Resolution", {
        "type": "string", "default": "512,768,1024",
        "description": "Image resolutions for training (comma-separated); images are bucketed to these sides"}),
    ("learning_rate", "Learning Rate", {
        "type": "number", "default": 0.0004, "description": "Learning rate, if you're new to training you "
                                                              "probably don't need to change this."}),
    ("caption_dropout_rate", "Caption Dropout Rate", {
        "type": "number", "default": 0.05, "minimum": 0, "maximum": 1,
        "description": "Advanced setting. Determines how often a caption is ignored. 0.05 means for 5% of all "
                       "steps an image will be used without its caption. 0 means always use captions, while 1 "
                       "means never use them. Dropping captions helps capture more details of an image, and can "
                       "prevent over-fitting words with specific image elements. Try higher values when "
                       "training a style."}),
    ("cache_latents_to_disk", "Cache Latents To Disk", {
        "type": "boolean", "default": False,
        "description": "Use this if you have lots of input images and you hit out of memory errors"}),
    ("hf_repo_id", "Hf Repo Id", {
        "type": "string",
        "description": "Hugging Face repository ID, if you'd like to upload the trained LoRA to Hugging Face. "
                       "For example, lucataco/flux-dev-lora. If the given repo does not exist, a new public repo "
                       "will be created."}),
    ("hf_token", "Hf Token", {
        "type": "string", "format": "password", "x-cog-secret": True, "writeOnly": True,
        "description": "Hugging Face token, if you'd like to upload the trained LoRA to Hugging Face."}),
]

# What a trained version takes when run: the inputs of black-forest-labs/flux-dev-lora.
_RUN_INPUTS: list[tuple[str, str, dict[str, Any]]] = [
    ("prompt", "Prompt", {"type": "string", "description": "Prompt for generated image. If you include the "
                                                           "`trigger_word` used in the training process you are "
                                                           "more likely to activate the trained object, style, or "
                                                           "concept in the resulting image."}),
    ("aspect_ratio", "Aspect Ratio", {"allOf": [{"$ref": "#/components/schemas/aspect_ratio"}], "default": "1:1",
                                      "description": "Aspect ratio for the generated image"}),
    ("num_outputs", "Num Outputs", {"type": "integer", "default": 1, "minimum": 1, "maximum": 4,
                                    "description": "Number of outputs to generate"}),
    ("lora_scale", "Lora Scale", {"type": "number", "default": 1, "minimum": -1, "maximum": 3,
                                  "description": "Determines how strongly the main LoRA should be applied. Sane "
                                                 "results between 0 and 1 for base inference."}),
    ("extra_lora", "Extra Lora", {"type": "string", "description": "Load LoRA weights. Supports Replicate models "
                                                                   "in the format <owner>/<username> or "
                                                                   "<owner>/<username>/<version>, HuggingFace URLs, "
                                                                   "CivitAI URLs, or .safetensors URLs."}),
    ("extra_lora_scale", "Extra Lora Scale", {"type": "number", "default": 1, "minimum": -1, "maximum": 3,
                                              "description": "Determines how strongly the extra LoRA should be "
                                                             "applied."}),
    ("num_inference_steps", "Num Inference Steps", {"type": "integer", "default": 28, "minimum": 1, "maximum": 50,
                                                    "description": "Number of denoising steps."}),
    ("guidance_scale", "Guidance Scale", {"type": "number", "default": 3, "minimum": 0, "maximum": 10,
                                          "description": "Guidance scale for the diffusion process."}),
    ("seed", "Seed", {"type": "integer", "description": "Random seed. Set for reproducible generation"}),
    ("output_format", "Output Format", {"allOf": [{"$ref": "#/components/schemas/output_format"}],
                                        "default": "webp", "description": "Format of the output images"}),
]


def _schema() -> dict[str, Any]:
    def properties(inputs):
        return {name: _prop(order, title, spec) for order, (name, title, spec) in enumerate(inputs)}

    return {
        "openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": {},
        "components": {"schemas": {
            "TrainingInput": {"type": "object", "title": "TrainingInput", "required": ["input_images"],
                              "properties": properties(_TRAINING_INPUTS)},
            "TrainingOutput": {"type": "object", "title": "TrainingOutput", "required": ["weights"],
                               "properties": {"version": {"type": "string", "title": "Version"},
                                              "weights": {"type": "string", "format": "uri", "title": "Weights"}}},
            "Input": {"type": "object", "title": "Input", "required": ["prompt"],
                      "properties": properties(_RUN_INPUTS)},
            "Output": {"type": "array", "title": "Output", "items": {"type": "string", "format": "uri"}},
            "batch_size": {"title": "batch_size", "description": "An enumeration.", "type": "integer",
                           "enum": [1, 2, 4]},
            "aspect_ratio": {"title": "aspect_ratio", "description": "An enumeration.", "type": "string",
                             "enum": ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16",
                                      "9:21", "custom"]},
            "output_format": {"title": "output_format", "description": "An enumeration.", "type": "string",
                              "enum": ["webp", "jpg", "png"]},
        }},
    }


FLUX_LORA_TRAINER_SCHEMA = _schema()


def training_input_schema(openapi_schema: dict[str, Any]) -> dict[str, Any]:
    """``components.schemas.TrainingInput`` of a trainer version's schema ({} when it is not a trainer)."""
    return (openapi_schema.get("components") or {}).get("schemas", {}).get("TrainingInput") or {}


def as_input_schema(openapi_schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with TrainingInput in the place of Input, so the form code that renders any model's
    Input renders a trainer's training form unchanged ($refs to other components keep working)."""
    schemas = dict((openapi_schema.get("components") or {}).get("schemas") or {})
    schemas["Input"] = schemas.get("TrainingInput") or {"type": "object", "properties": {}}
    return {**openapi_schema, "components": {**(openapi_schema.get("components") or {}), "schemas": schemas}}
