"""Training in less memory: activations recomputed in the backward pass."""

import contextlib
import threading

import tensorflow as tf

from tf_realnvp import training_mode

MODES = ('none', 'networks', 'invertible')

_recomputing = threading.local()


def is_recomputing():
  """Whether the code running now recomputes a forward pass for gradients."""
  return getattr(_recomputing, 'depth', 0) > 0


@contextlib.contextmanager
def recomputing():
  """Runs the block as a recomputation of training mode's forward pass (the
  gradient may be taken after the training block closed)."""
  _recomputing.depth = getattr(_recomputing, 'depth', 0) + 1
  try:
    with training_mode.training():
      yield
  finally:
    _recomputing.depth -= 1


def check_mode(recompute):
  """Raises a ValueError naming the choices unless `recompute` is one."""
  if recompute not in MODES:
    raise ValueError(f'recompute must be one of {MODES}, got {recompute!r}.')


def recomputed(function, *inputs):
  """`function(*inputs)` (float tensors in, a list of tensors out), whose
  activations the backward pass recomputes from `inputs` instead of keeping.
  Outside training mode (evaluation, exports) it is `function(*inputs)`.

  The gradients are those of `function` itself: the recomputation runs the
  same operations on the same inputs.

  `MODES` are the choices of `RealNVP(recompute=...)` and `--recompute`:

  - `'none'`: backpropagation keeps every activation of the forward pass.
  - `'networks'`: each coupling keeps only its s/t network's inputs and runs
    the network again in the backward pass (gradient checkpointing, Chen et
    al. 2016), with this function; in that run each residual block keeps only
    its input and runs again for its own gradients: two more network
    forwards per coupling.
  - `'invertible'`: the flow keeps only its output; each layer's input is
    rebuilt from its output by the inverse in the backward pass (Gomez et al.
    2017), `bijectors.Reversible`: activation memory does not grow with the
    number of layers; the networks are recomputed block by block as above.

  In a recomputation, batch normalization uses the batch's statistics again
  but does not update its running averages a second time (`is_recomputing`).

  #### References

  [1]: Tianqi Chen, Bing Xu, Chiyuan Zhang, Carlos Guestrin. Training Deep Nets
       with Sublinear Memory Cost. 2016. https://arxiv.org/abs/1604.06174
  [2]: Aidan N. Gomez, Mengye Ren, Raquel Urtasun, Roger B. Grosse. The
       Reversible Residual Network: Backpropagation Without Storing
       Activations. NeurIPS 2017. https://arxiv.org/abs/1707.04585
  """
  if not training_mode.is_training():
    return function(*inputs)

  @tf.custom_gradient
  def run(*inputs):
    outputs = function(*inputs)

    def gradient(*output_gradients, variables=()):
      again_inputs = after_gradients(inputs, output_gradients)
      with tf.GradientTape() as tape:
        tape.watch(again_inputs)
        with recomputing():
          again = function(*again_inputs)
      gradients = tape.gradient(
          again, list(again_inputs) + list(variables),
          output_gradients=list(output_gradients),
          unconnected_gradients=tf.UnconnectedGradients.ZERO)
      return gradients[:len(inputs)], gradients[len(inputs):]

    return outputs, gradient

  return run(*inputs)


def after_gradients(inputs, gradients):
  """`inputs`, each plus a zero computed from `gradients` at run time: new
  tensors, which no cache (TFP's bijector cache) maps to the forward pass.

  The recomputation then waits for the backward pass to reach it, and no
  graph optimizer (Grappler's or XLA's common-subexpression elimination) can
  merge it with the forward pass and keep the activations after all. The
  zero is NaN where the gradient is, which it would propagate anyway.
  """
  probe = tf.reshape(next(g for g in gradients if g is not None), [-1])[:1]
  zero = tf.reduce_sum(tf.where(tf.math.is_nan(probe), probe,
                                tf.zeros_like(probe)))
  return [x + tf.cast(zero, x.dtype) for x in inputs]
