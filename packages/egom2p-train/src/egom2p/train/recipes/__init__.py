"""The trainer's recipes (:mod:`egom2p.train.recipe`): ``egom2p`` and ``tokenizer``, one module each."""
