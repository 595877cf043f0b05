"""Local development tooling: a real Triton (from the nvidia-pytriton wheel) over generated stand-in models.

``model_repo`` builds the model repository, ``tritonserver`` runs the server, ``python -m localdev`` wires
both to the gateway for interactive use.
"""
