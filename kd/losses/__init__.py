"""The distiller zoo: one loss per module, found by name.

A distiller is an `nn.Module` with `forward(student, teacher, batch) -> scalar`, where `student` and
`teacher` are the models' `Seq2SeqLMOutput`s and `batch` holds `attention_mask` and `labels`
(-100 marks padding). Each class declares in `needs` which outputs it reads, so the training step
asks the models for exactly those. The teacher side is always detached.

Adding a loss (see docs/extending.md): create `kd/losses/<name>.py` with

    @dataclass(frozen=True)
    class MySettings(LossSettings):          # `weight` comes with LossSettings
        margin: float = 1.0

    @register("<name>")                      # the module's own file name (kd.losses.registry.register)
    class MyKD(Distiller):
        Settings = MySettings
        needs = frozenset({"logits"})
        @classmethod
        def from_settings(cls, settings, teacher_config, student_config, *, where): ...
        def forward(self, student, teacher, batch): ...

and name it in a recipe: `kd.students.<student>.losses.<name>: {margin: 2.0}`. There is no import
list to edit: `kd.losses.registry.loss_class(name)` imports `kd.losses.<name>`.
"""
