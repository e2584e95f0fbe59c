"""Direct preference optimisation (DPO, IPO, robust DPO) from human pairs, offline or online."""
