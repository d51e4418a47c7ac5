"""diffusers bridge: `from_diffusers` (a diffusers model as a fewstep denoiser) and `FewStepScheduler`.

Submodules load lazily: `load` and `schedule` import diffusers only inside functions; `scheduler` imports it at
module level (it subclasses diffusers' SchedulerMixin), so it is only imported when `fs.FewStepScheduler` is used.
"""
