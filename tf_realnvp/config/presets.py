"""The defaults that depend on the data and the flow; the paper's presets."""

# The defaults of image datasets: the paper's multi-scale flow with Glow
# steps (ActNorm and an invertible 1x1 convolution before each affine
# coupling, Kingma & Dhariwal 2018), which reach the PyTorch reference's
# 400-step bits/dim first at the paper's sizes (BENCHMARKS.md, "The field's
# gains"); the paper's batch size and recipe (Dinh et al. 2017, Sec. 4.1:
# Adam at 1e-3), its uniform dequantization (the pixels plus U[0, 1) noise),
# and the reference's training length (chrischute/real-nvp,
# `--num_epochs=100`), evaluating once per epoch.
IMAGE_DEFAULTS = dict(flow='glow', batch_size=64, epochs=100,
                      dequantization='uniform')

# The defaults of 2-D data: spline couplings (nsf), which end 8gaussians 0.005
# nats above its exact entropy where affine ones end 0.10 above it
# (BENCHMARKS.md, "2-D: 8gaussians"); 3000 steps of 512 points, 1000 steps
# between evaluations: the default run on 8gaussians takes under a minute on
# 2 CPU cores.
VECTOR_DEFAULTS = dict(flow='nsf', batch_size=512, train_steps=3000,
                       eval_every=1000)

# The learning-rate recipe: the paper's (Adam at 1e-3, constant) for images
# and for the flows without defaults of their own below.
PAPER_RECIPE = dict(learning_rate=1e-3, warmup_steps=0, lr_decay='none')

# The defaults of the coupling flows on 2-D data, each the best measured on
# 8gaussians (BENCHMARKS.md, "2-D: 8gaussians"): a warmup, then a cosine
# decay from the peak rate; nsf's number of bins; XLA for nsf's step, whose
# small ops, unlike the images' convolutions, gain from fusion.
VECTOR_FLOW_DEFAULTS = dict(
    realnvp=dict(learning_rate=1e-2, warmup_steps=200, lr_decay='cosine'),
    nsf=dict(learning_rate=5e-3, warmup_steps=200, lr_decay='cosine',
             spline_bins=16, jit=True))

# A recipe's warmup is a default that adapts to the run's length: at most
# this share of it, so the 3000-step default keeps its 200 steps and
# a 30-step run warms up over 3.
WARMUP_SHARE = 0.1

# A resumed run with a decaying rate whose length changes (train further)
# moves from the rate it reached to the schedule of the new length over a
# ramp of this share of the updates left, at least 1, at most this many (the
# measured warmup's length): continuous, so the loss does not jump.
RAMP_SHARE = 0.1
RAMP_MAX_STEPS = 200

# --preset=paper (Dinh et al. 2017, Sec. 4.1): "Our multi-scale architecture
# is repeated recursively until the input of the last recursion is a
# 4 x 4 x c tensor. For datasets of images of size 32 x 32, we use 4 residual
# blocks with 32 hidden feature maps for the first coupling layers with
# checkerboard masking. Only 2 residual blocks are used for images of size
# 64 x 64. We use a batch size of 64. For CIFAR-10, we use 8 residual blocks,
# 64 feature maps, and downscale only once." CelebA and LSUN are trained at
# 64 x 64 (their preprocessing: `tf_realnvp.data`). `num_scales` counts the
# squeezes plus one: 32 -> 4 is 3 squeezes, 64 -> 4 is 4. The comments give
# the test bits/dim of Table 1. Every preset has the paper's flow: affine
# couplings, without the Glow steps of the image default.
_PAPER = dict(flow='realnvp', batch_size=64)
_PAPER_32 = dict(_PAPER, num_scales=4, num_res_blocks=4, num_filters=32)
_PAPER_64 = dict(_PAPER, num_scales=5, num_res_blocks=2, num_filters=32,
                 image_size=64)
PAPER_PRESETS = {
    'cifar10': dict(_PAPER, num_scales=2, num_res_blocks=8,
                    num_filters=64),  # 3.49
    'downsampled_imagenet/32x32': dict(_PAPER_32, image_size=32),  # 4.28
    'downsampled_imagenet/64x64': _PAPER_64,  # 3.98
    'lsun/bedroom': _PAPER_64,  # 2.72
    'lsun/tower': _PAPER_64,  # 2.81
    'lsun/church_outdoor': _PAPER_64,  # 3.08
    'celeb_a': _PAPER_64,  # 3.02
}
