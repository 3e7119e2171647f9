"""`python -m gan_jax.evaluate --workdir DIR`: FID/KID (and IS) of a trained run.

The implementation lives in `gan_jax.metrics.evaluate`; this module is its short name.
"""

from gan_jax import console
from gan_jax.metrics.evaluate import define_flags, main

if __name__ == "__main__":
    define_flags()
    console.run(main)
