"""caprl: train and judge dense captioners by how well a text-only reader answers questions from them."""

from caprl.schema import MCQ, FrameSampling, ImageMedia, Sample, SchemaError, VideoMedia

__version__ = "0.1.0"
__all__ = ["MCQ", "FrameSampling", "ImageMedia", "Sample", "SchemaError", "VideoMedia", "__version__"]
