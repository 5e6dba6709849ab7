"""Students: recipes (params.yaml kd.students) and the distillation run."""
