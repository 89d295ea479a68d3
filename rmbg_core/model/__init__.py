"""The model: the plain IS-Net, checkpoint loading, device and dtype, image reading, the model card's pre- and
post-processing, and ``RMBGModel`` / ``load_model`` (images in, masks out).

Import names from the module that defines them (``rmbg_core.model.model.load_model``, or the public
``rmbg_core.load_model``); this package imports nothing itself.
"""
