"""The base language model: loading, objectives, gradients and scoring.

Importing the package registers every built-in prediction objective: ``objectives`` holds the
registry and the two plain objectives, ``mlm_head`` (``clm_mlm_head``) and ``seq2seq``
(``seq2seq_encoder_mlm``) register themselves on import. Any ``gradiend.lm.*`` import runs this
first, so ``make_objective`` always sees the full table and ``objectives`` imports neither.
"""

from gradiend.lm import mlm_head, seq2seq  # noqa: F401 - imported to register their objectives
