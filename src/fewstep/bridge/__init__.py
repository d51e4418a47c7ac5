"""diffusers bridge: `from_diffusers` (a diffusers model as a fewstep denoiser) and `FewStepScheduler`.

Submodules load lazily: `load` and `schedule` import diffusers only inside functions, `replan` (the plans the
scheduler derives: another NFE, an img2img tail, a default for a foreign config) not at all; `scheduler` imports it at
module level (it subclasses diffusers' SchedulerMixin), so it is only imported when `fs.FewStepScheduler` is used.
"""
