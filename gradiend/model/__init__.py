"""GRADIEND artefacts: the autoencoder and its pairing with a base model."""

from gradiend.model.gradiend import GradiendModel
from gradiend.model.stitch import stitch_components
from gradiend.model.with_gradiend import ModelWithGradiend

ParamMappedGradiendModel = GradiendModel  # the incumbent's name; the param map is built in

__all__ = ["GradiendModel", "ModelWithGradiend", "ParamMappedGradiendModel", "stitch_components"]
