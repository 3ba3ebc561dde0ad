"""vmf_identities' occlusion degradation (chapter 4's quality model): quality that the input's norm does not give away."""

import pytest
import torch
from scipy import stats

from lossbook.lab import data


def _ids(degradation, quality=(0.3, 1.0), **kwargs):
    return data.vmf_identities(100, 20, dim=8, kappa=50.0, seed=3, quality=quality, degradation=degradation, **kwargs)


def test_contrast_is_the_default_degradation():
    default = data.vmf_identities(30, 4, seed=2, quality=(0.4, 1.0))
    explicit = data.vmf_identities(30, 4, seed=2, quality=(0.4, 1.0), degradation="contrast")
    for name in ("x", "y", "centres", "latent", "quality"):
        assert torch.equal(getattr(default, name), getattr(explicit, name))


def test_without_quality_the_degradation_changes_nothing():
    clean = data.vmf_identities(30, 4, seed=2)
    occl = data.vmf_identities(30, 4, seed=2, degradation="occlusion")
    for name in ("x", "y", "centres", "latent", "quality"):
        assert torch.equal(getattr(clean, name), getattr(occl, name))


def test_occlusion_keeps_the_draws_of_contrast():
    contrast, occl = _ids("contrast"), _ids("occlusion")
    for name in ("y", "centres", "latent", "quality"):
        assert torch.equal(getattr(contrast, name), getattr(occl, name))
    assert not torch.equal(contrast.x, occl.x)
    assert occl.x.dtype == torch.float32 and occl.x.shape == contrast.x.shape


def test_occlusion_input_norm_does_not_track_quality_but_contrast_does():
    contrast, occl = _ids("contrast"), _ids("occlusion")
    q = occl.quality.numpy()
    rho_occl = stats.spearmanr(occl.x.norm(dim=1).numpy(), q)[0]
    rho_contrast = stats.spearmanr(contrast.x.norm(dim=1).numpy(), q)[0]
    assert abs(rho_occl) < 0.06  # 2,000 samples: the null's SD is about 0.022
    assert rho_contrast > 0.2


def test_quality_one_means_no_occlusion():
    ones = torch.ones(2000, dtype=torch.float64)
    assert torch.equal(_ids("occlusion", quality=ones).x, _ids("contrast", quality=ones).x)


def test_occluded_share_grows_as_quality_falls():
    # the same draws at a constant quality: the share of features that differ from the unoccluded observation
    # (quality 1 leaves every feature) grows as the quality falls; the blur changes every feature a little, so
    # compare only how many features moved by more than the blur can move them
    def moved(q):
        ids = data.vmf_identities(200, 10, dim=8, seed=4, degradation="occlusion",
                                  quality=torch.full((2000,), q, dtype=torch.float64))
        return ids.x

    base = moved(1.0)
    shares = [((moved(q) - base).abs() > 0.5).double().mean().item() for q in (0.95, 0.7, 0.4)]
    assert shares[0] < shares[1] < shares[2]


def test_low_quality_samples_are_harder_to_recognise_from_the_input():
    ids = _ids("occlusion", quality=(0.2, 1.0))
    x = torch.nn.functional.normalize(ids.x.double(), dim=1)
    q, y = ids.quality.numpy(), ids.y.numpy()
    centre = torch.stack([x[ids.y == k].mean(0) for k in range(100)])
    cos_to_own = (x * torch.nn.functional.normalize(centre, dim=1)[ids.y]).sum(1).numpy()
    assert stats.spearmanr(cos_to_own, q)[0] > 0.3
    assert y.shape == q.shape


def test_occlusion_is_deterministic_by_seed():
    assert torch.equal(_ids("occlusion").x, _ids("occlusion").x)
    other = data.vmf_identities(100, 20, dim=8, kappa=50.0, seed=4, quality=(0.3, 1.0), degradation="occlusion")
    assert not torch.equal(_ids("occlusion").x, other.x)


@pytest.mark.parametrize("bad", ["blur", "", None, 1])
def test_unknown_degradation_is_refused(bad):
    with pytest.raises(ValueError, match=r"^vmf_identities: degradation must be 'contrast'"):
        data.vmf_identities(3, 2, quality=(0.5, 1.0), degradation=bad)
