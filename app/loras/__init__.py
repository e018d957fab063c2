"""LoRAs: train one from a dataset on Replicate, import one by reference, and use it when generating."""
