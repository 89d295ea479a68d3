"""Edge tools on masks and cutouts: compositing, foreground colour estimation, mask refinements, connected
components. They work on tensors only and need nothing of the model but its image helpers.

Import names from the module that defines them (``rmbg_core.edges.refine.Refinement``, or the public
``rmbg_core.Refinement``); this package imports nothing itself.
"""
