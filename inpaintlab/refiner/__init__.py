"""A1111 v1.10's refiner: a second checkpoint that takes over sampling part-way (`refiner_checkpoint`,
`refiner_switch_at`), and the SDXL refiner model family it is usually paired with.

* `rows`: the settings rows and `find_refiner` (torch-free);
* `conditioning`: the SDXL refiner's text conditioning (OpenCLIP bigG alone) and its ADM vector with the aesthetic
  score;
* `technique`: the `Refiner` technique (A1111's `apply_refiner` at every denoiser call);
* `tiny`: a tiny random SDXL refiner file in the real layout.

Nothing is imported here, so `inpaintlab.refiner.rows` loads without torch.
"""
