"""Compose the stages: the streaming pipeline, the tshark engine, files and -j workers."""
