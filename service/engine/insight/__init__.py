"""Model insight beyond one picture: filters, activation maximization, feature inversion,
layer statistics and embeddings.

Plain functions and frozen dataclasses like the rest of the engine. Long computations take a
`progress` callback, called between steps, which is also where cooperative cancellation
happens (it may raise `Cancelled`; both in `service.engine.progress`).
"""
