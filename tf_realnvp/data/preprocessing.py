"""How stored 8-bit images are made from the source's, and dequantized."""

import functools

import tensorflow as tf

# The side of resized images when `image_size` is not given, unless a TFDS
# config is named after its size ('64x64').
DEFAULT_IMAGE_SIZE = 32
# CelebA images are 218x178 (height x width); the customary crop is the
# central 148x148 square (Dinh et al. 2017, Sec. 4.1; Larsen et al. 2016).
CELEB_A_CROP = 148
# LSUN: "we downsample the image so that the smallest side is 96 pixels and
# take random crops of 64 x 64" (Dinh et al. 2017, Sec. 4.1).
LSUN_SHORT_SIDE_PER_CROP = 96 / 64


def _to_uint8(images):
  return tf.cast(tf.clip_by_value(tf.round(images), 0., 255.), tf.uint8)


def _resize(image, size):
  return _to_uint8(tf.image.resize(image, size, antialias=True))


def central_square(image, side=None):
  """The central `side` x `side` square of `image` (default: the largest)."""
  shape = tf.shape(image)
  if side is None:
    side = tf.minimum(shape[0], shape[1])
  top, left = (shape[0] - side) // 2, (shape[1] - side) // 2
  return image[top:top + side, left:left + side]


def square_resized(image, size, crop=None):
  """The central `crop` square of `image` (default: the largest), resized to
  `size` x `size`."""
  return _resize(central_square(image, crop), (size, size))


def short_side_resized(image, short_side):
  """`image` resized so its short side is `short_side`; its central square."""
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  scale = short_side / tf.reduce_min(shape)
  size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), short_side)
  return central_square(_resize(image, size), short_side)


def stored_form(kind, image_size):
  """`(preprocess, stored side, crop)` for a TFDS image of `kind`: 'as_given',
  'lsun', 'celeb_a' or 'square' (below).

  Preprocessing, applied as the images are stored (Dinh et al. 2017, Sec. 4.1):

    * images of one fixed size (cifar10, mnist, svhn_cropped, ...): as given;
    * celeb_a: the central 148x148 crop, resized to `image_size`;
    * lsun/*: resized so that the short side is `image_size * 96 / 64` (96 for
      64x64 images), keeping its central square; the stream then takes random
      `image_size` crops in training, the central one otherwise;
    * other images of varying size (downsampled_imagenet, a folder): the
      largest central square, resized to `image_size`.

  Resizing is bilinear with an anti-aliasing filter, rounded back to `uint8`.

  The stream adds uniform dequantization noise to the stored pixels
  (`dequantize`).
  """
  if kind == 'as_given':
    return tf.identity, None, None
  if kind == 'lsun':
    side = round(image_size * LSUN_SHORT_SIDE_PER_CROP)
    return (functools.partial(short_side_resized, short_side=side), side,
            image_size)
  crop = CELEB_A_CROP if kind == 'celeb_a' else None
  return (functools.partial(square_resized, size=image_size, crop=crop),
          image_size, None)


def dequantize(images, seed):
  """Returns `images + u`, `u ~ U[0, 1)^D`: continuous intensities in `[0, 256)`.

  A density `p` on `[0, 256)^D` fitted to dequantized data bounds the discrete
  model, `-log P(k) <= E_u[-log p(k + u)]` (Theis et al. 2016, eq. 8), which is
  why bits/dim of dequantized data is what papers report.

  Args:
    images: `uint8` tensor of pixel values.
    seed: an int, or a shape-[2] int tensor of a stateless seed; the noise is
      a function of the seed alone (not of TensorFlow's global seed).

  Raises:
    TypeError: if `images` is not `uint8`.
  """
  images = tf.convert_to_tensor(images)
  if images.dtype != tf.uint8:
    raise TypeError(
        f'Expected uint8 pixel values in [0, 255], got dtype {images.dtype.name}. '
        'Pass the raw 8-bit images; the noise is added here.')
  if isinstance(seed, int):
    seed = tf.constant([0, seed], tf.int32)
  noise = tf.random.stateless_uniform(tf.shape(images), seed=seed)
  pixels = tf.cast(images, tf.float32)
  # In float32, k + u rounds up to k + 1 for u within 2**-17 of 1 (k >= 128);
  # keep every value in [k, k + 1).
  return tf.minimum(pixels + noise, tf.math.nextafter(pixels + 1., pixels))
