"""The optimizer: fused Adam, its learning-rate schedule, Polyak averaging."""

import contextlib

import keras
import tensorflow as tf

from tf_realnvp.config import presets
from tf_realnvp.config.settings import LR_DECAYS


class FusedAdam(keras.optimizers.Adam):
  """`keras.optimizers.Adam`, updating each variable with one fused kernel.

  The update is Adam's (Kingma & Ba, 2015, arXiv:1412.6980, Sec. 2, with
  the bias correction folded into the step size), as Keras computes it:

      m <- m + (1 - beta_1) (g - m)
      v <- v + (1 - beta_2) (g^2 - v)
      theta <- theta - lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
                       * m / (sqrt(v) + epsilon)

  and with `amsgrad=True` (Reddi et al., 2018), `v_hat <- max(v_hat, v)`
  divides in place of `v`. Keras writes this as 24 TensorFlow ops per
  variable, a dozen of them passes over the variable; TensorFlow's
  `ResourceApplyAdam` (or `ResourceApplyAdamWithAmsgrad`) kernel does it in
  one (fewer ops to trace and a faster step: BENCHMARKS.md). Everything else (the constructor, gradient clipping, weight
  decay, learning-rate schedules, distribution strategies, the checkpointed
  slots) is Keras's, so checkpoints move freely between the two.
  """

  def update_step(self, gradient, variable, learning_rate):
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    arguments = dict(
        var=_handle(variable), m=_handle(self._momentums[index]),
        v=_handle(self._velocities[index]),
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))
    if self.amsgrad:
      tf.raw_ops.ResourceApplyAdamWithAmsgrad(
          vhat=_handle(self._velocity_hats[index]), **arguments)
    else:
      tf.raw_ops.ResourceApplyAdam(**arguments)


def _handle(variable):
  """The resource handle of a Keras or TensorFlow variable."""
  if isinstance(variable, keras.Variable):
    variable = variable.value
  return variable.handle


def learning_rate_schedule(learning_rate, *, warmup_steps=0, lr_decay='none',
                           total_steps=None, lr_decay_floor=0., lr_plan=()):
  """The learning rate as a function of the number of updates applied, t.

  With W = `warmup_steps`, T = `total_steps`, lr = `learning_rate` and
  f = `lr_decay_floor`:

      lr(t) = lr t / W                              for t < W, then
      lr(t) = lr                                    with lr_decay='none',
      lr(t) = lr (f + (1 - f) (1 + cos(pi s)) / 2)  with lr_decay='cosine',
              s = min(t - W, T - W) / (T - W),

  a linear warmup (Goyal et al. 2017, arXiv:1706.02677, Sec. 2.2) then a
  cosine decay (Loshchilov & Hutter 2017, arXiv:1608.03983, Eq. 5) that
  reaches f lr after the run's T updates. Both are Keras's `CosineDecay`;
  without decay it gets `alpha=1`, which makes its decayed rate the target
  itself. With neither warmup nor decay the rate is the plain float, so the
  optimizer has the variables (and checkpoints) it always had.

  `lr_plan` (a decay only) holds the changes of the run's length, each
  `dict(update=u, rate=r, ramp=R, from_train_steps=T0, train_steps=T1)`
  (`length_change`): the run was planned for T0 (the first change's T0 is
  the T above), and from update u on

      lr(t) = lr_T1(t) + (r - lr_T1(u)) max(0, 1 - (t - u) / R),

  where lr_T1 is the schedule above with T = T1 and r = lr(u) the rate
  reached: the rate moves linearly from where it was to the schedule of a
  T1-step run over R updates, then follows it to f lr at T1.
  """
  learning_rate = float(learning_rate)
  if lr_decay not in LR_DECAYS:
    raise ValueError(f'lr_decay must be one of {LR_DECAYS}, got {lr_decay!r}.')
  if warmup_steps < 0:
    raise ValueError(f'warmup_steps must be >= 0, got {warmup_steps}.')
  if lr_decay == 'none':
    if not warmup_steps:
      return learning_rate
    decay_steps, lr_decay_floor = 1, 1.
  else:
    if lr_plan:
      total_steps = lr_plan[0]['from_train_steps']
    if total_steps is None or total_steps <= warmup_steps:
      raise ValueError(
          f'A cosine decay needs more training steps ({total_steps}) than '
          f'warmup steps ({warmup_steps}).')
    decay_steps = total_steps - warmup_steps
  schedule = keras.optimizers.schedules.CosineDecay(
      0., decay_steps, alpha=float(lr_decay_floor),
      warmup_target=learning_rate, warmup_steps=warmup_steps)
  if lr_decay == 'none' or not lr_plan:
    return schedule
  return _Replanned(schedule, lr_plan, [
      keras.optimizers.schedules.CosineDecay(
          0., max(1, change['train_steps'] - warmup_steps),
          alpha=float(lr_decay_floor), warmup_target=learning_rate,
          warmup_steps=warmup_steps) for change in lr_plan])


def length_change(update, rate, from_train_steps, train_steps):
  """The `lr_plan` entry of a run at `update`, at the learning rate `rate`,
  planned for `from_train_steps` and asked for `train_steps`: its ramp is a
  share of the updates left (`presets.RAMP_SHARE`, `RAMP_MAX_STEPS`)."""
  ramp = int(presets.RAMP_SHARE * (train_steps - update))
  return dict(update=int(update), rate=float(rate),
              ramp=max(1, min(presets.RAMP_MAX_STEPS, ramp)),
              from_train_steps=int(from_train_steps),
              train_steps=int(train_steps))


class _Replanned(keras.optimizers.schedules.LearningRateSchedule):
  """A schedule whose run changed its length (`learning_rate_schedule`)."""

  def __init__(self, schedule, lr_plan, targets):
    self.schedule = schedule
    self.lr_plan = [dict(change) for change in lr_plan]
    self.targets = targets

  def __call__(self, step):
    rate = self.schedule(step)
    t = tf.cast(step, rate.dtype)
    for change, target in zip(self.lr_plan, self.targets):
      start = float(change['update'])
      left = tf.maximum(0., 1. - (t - start) / float(change['ramp']))
      offset = (change['rate'] - target(change['update'])) * left
      rate = tf.where(t >= start, target(step) + offset, rate)
    return rate

  def get_config(self):
    return dict(schedule=self.schedule.get_config(), lr_plan=self.lr_plan)


def make_optimizer(learning_rate, *, warmup_steps=0, lr_decay='none',
                   total_steps=None, lr_decay_floor=0., lr_plan=(),
                   ema_decay=0.):
  """The training run's optimizer: `FusedAdam` with its schedule and averaging.

  The learning rate follows `learning_rate_schedule` (a function of
  `optimizer.iterations`, the updates applied, which the checkpoint holds).
  With `ema_decay > 0` the optimizer also keeps Polyak averages of the
  variables it is built on (Polyak & Juditsky 1992; Keras's `use_ema`):
  after the update that makes the weights w_k,

      a_1 = w_1,    a_k = ema_decay a_(k-1) + (1 - ema_decay) w_k,

  stored as optimizer variables (`moving_averages`), so they are checkpointed
  and mirrored like Adam's moments. `averaged_weights` puts them in the
  variables for evaluation. With the defaults this is
  `FusedAdam(learning_rate)`.

  Call it inside the distribution strategy's scope, then `build` it on the
  trainable variables.
  """
  if not 0. <= ema_decay < 1.:
    raise ValueError(f'ema_decay must be in [0, 1), got {ema_decay}.')
  schedule = learning_rate_schedule(
      learning_rate, warmup_steps=warmup_steps, lr_decay=lr_decay,
      total_steps=total_steps, lr_decay_floor=lr_decay_floor, lr_plan=lr_plan)
  return FusedAdam(schedule, use_ema=ema_decay > 0., ema_momentum=ema_decay)


def moving_averages(optimizer):
  """The optimizer's averages of the variables it was built on, in their order.

  Empty without averaging. (Keras keeps them in a private list; its own
  `finalize_variable_values` reads the same.)
  """
  if not optimizer.use_ema:
    return []
  # pylint: disable-next=protected-access
  return list(optimizer._model_variables_moving_average)


def start_averages(optimizer, variables):
  """Sets the averages to `variables` while no update has been applied.

  Keras creates them as zeros and replaces them by the weights at the first
  update (its momentum is 0 while `iterations` is 0), so this changes no
  average after an update; it makes those of a run saved or evaluated before
  any update the weights rather than zeros.
  """
  if moving_averages(optimizer) and optimizer.iterations.numpy() == 0:
    for average, variable in zip(moving_averages(optimizer), variables):
      average.assign(variable)


@contextlib.contextmanager
def averaged_weights(optimizer, variables):
  """Inside the block `variables` hold the optimizer's averages.

  `variables` must be the list the optimizer was built on. The training
  values are copied first and put back when the block ends, also on an
  exception, so a checkpoint saved afterwards holds the training weights.
  Without averaging the block changes nothing. Works in cross-replica
  context: Keras's `finalize_variable_values` writes every replica's copy.
  """
  if not optimizer.use_ema:
    yield
    return
  training_values = [tf.identity(variable) for variable in variables]
  optimizer.finalize_variable_values(variables)
  try:
    yield
  finally:
    for variable, value in zip(variables, training_values):
      variable.assign(value)
