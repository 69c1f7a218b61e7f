"""Sample-quality metrics: Fréchet distance (Inception FID, FD-LeNet), KID, precision/recall, density/coverage."""

from gpmcli.metrics.frechet import MetricWarning, feature_moments, frechet_distance

__all__ = ["MetricWarning", "feature_moments", "frechet_distance", "compute_stats", "fid", "kid", "prdc"]


def __getattr__(name):  # lazy: keep `import gpmcli.metrics` light
    if name in ("compute_stats", "fid"):
        from gpmcli.metrics import api

        return getattr(api, name)
    if name == "kid":
        from gpmcli.metrics.kid import kid

        return kid
    if name == "prdc":
        from gpmcli.metrics.knn import prdc

        return prdc
    raise AttributeError(name)
