"""Publishing to the Hugging Face Hub: ``rmbg export`` writes a transformers remote-code folder
(:mod:`.export`), whose code is the front-end files flattened with the core modules they need (:mod:`.flatten`).
"""
