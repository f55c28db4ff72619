"""The data layer: the paper's data sets (CIFAR-10/100, TinyImageNet, ImageNet; Tables 1-3) and
three that run offline (scikit-learn digits, CIFAR-10 re-encoded as JPEG q75, synthetic shapes
with known difficulty), all behind one entry point, :func:`build_dataset`, with the §4.2
augmentation (random crop with padding, horizontal flip, Cutout) and seeded loaders."""

from .arrays import ArrayDataset
from .cifar_jpeg import use_shared_cifar10_jpeg
from .errors import DatasetError
from .imagefolder import load_rgb, prepare_tinyimagenet_val
from .info import DatasetInfo
from .loader import build_loader, seed_worker
from .paths import data_root
from .registry import build_dataset, dataset_info, dataset_title, external_test_split, list_datasets
from .splits import split_per_class
from .subsets import LabelledSubset, WithIndex, balanced_subset
from .synthetic import SyntheticDifficulty
from .transforms import Cutout, build_transform, cutout

__all__ = [
    "ArrayDataset",
    "Cutout",
    "DatasetError",
    "DatasetInfo",
    "LabelledSubset",
    "SyntheticDifficulty",
    "WithIndex",
    "balanced_subset",
    "build_dataset",
    "build_loader",
    "build_transform",
    "cutout",
    "data_root",
    "dataset_info",
    "dataset_title",
    "external_test_split",
    "list_datasets",
    "load_rgb",
    "prepare_tinyimagenet_val",
    "seed_worker",
    "split_per_class",
    "use_shared_cifar10_jpeg",
]
