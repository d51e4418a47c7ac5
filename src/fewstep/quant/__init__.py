"""Post-training quantization of denoisers: simulated (fake) quantization with TFMQ-DM (Huang et al., CVPR 2024;
"Temporal Feature Matters", TPAMI 2025) and the Q-Diffusion baseline (Li et al., ICCV 2023), and a real int8 CPU
model through PT2E (`to_int8`).

    q  = fs.quant.quantize(den, bits="w8a8", method="tfmq", plan=plan)   # a quantized denoiser
    q8 = fs.quant.to_int8(q)                                             # real int8 on x86 CPUs
"""

from __future__ import annotations

from ..lazy import attach

__getattr__, __dir__ = attach(__name__, {
    "quantize": "api", "recalibrate": "api", "save": "api", "cosines": "api", "calibration_plan": "api",
    "QuantizedDenoiser": "model", "parse_bits": "model", "ReconConfig": "recon", "to_int8": "int8",
    "Int8Denoiser": "int8",
})
