"""Real data: image datasets, their spectra, SGD on real images and the Gaussian-universality
workflow (docs/theory.md §9)."""

from ._dataset import (
    SAMPLING as SAMPLING,
    Dataset as Dataset,
    covariance_from_moment as covariance_from_moment,
    empirical_covariance as empirical_covariance,
)
from ._moments import moments as moments, second_moment as second_moment
from ._datasets import (
    FASHION_MNIST_FOLDERS as FASHION_MNIST_FOLDERS,
    NAMES as NAMES,
    PHOTOGRAPHS as PHOTOGRAPHS,
    RECIPES as RECIPES,
    SPLITS as SPLITS,
    ForbiddenGlobal as ForbiddenGlobal,
    Preprocessing as Preprocessing,
    cifar10 as cifar10,
    fashion_mnist as fashion_mnist,
    from_file as from_file,
    load as load,
    mnist as mnist,
    natural_patches as natural_patches,
    preprocess as preprocess,
    read_array as read_array,
    read_cifar_binary as read_cifar_binary,
    read_cifar_python as read_cifar_python,
    read_idx as read_idx,
)
from ._universality import (
    UniversalityResult as UniversalityResult,
    recording_times as recording_times,
    universality as universality,
)
