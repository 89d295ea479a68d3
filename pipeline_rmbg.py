"""transformers ``image-segmentation`` pipeline for RMBG-1.4 (built in its own issue)."""
