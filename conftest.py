# The qwen-acceptance plugin is loaded through its pytest11 entry point (pip install -e .); nothing else is needed
# here. Kept at the root so pytest's rootdir (and the default baselines.yaml beside it) is this checkout.
