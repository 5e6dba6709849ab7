"""t5-distill: knowledge distillation for T5 summarization models."""
