"""Inference on images and video: one engine, thin scripts that draw or save."""
