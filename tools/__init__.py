"""The project's own measuring tools: budgets, speed and GPU benches, the real-scale rehearsal, the
README generator. They import kd; kd never imports them."""
