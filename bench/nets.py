"""The convolutional VAE of disentanglement_lib (Higgins et al. 2017; Locatello et al. 2019).

Encoder: 4 conv layers 32-32-64-64 (4x4, stride 2, ReLU) -> FC 256 -> (mu, logvar).
Decoder: FC 256 -> FC 1024 -> 4 transposed convs 64-32-32-C (4x4, stride 2) -> logits.
For 64x64 images with 1 or 3 channels.
"""
from __future__ import annotations

import torch
from torch import nn

from disentbench.methods.base import Output, reparameterise


class Encoder(nn.Module):
    def __init__(self, channels: int = 1, latent_dim: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256), nn.ReLU(),
        )
        self.mu = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)

    def forward(self, x):
        h = self.features(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, channels: int = 1, latent_dim: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(),
            nn.Linear(256, 64 * 4 * 4), nn.ReLU(),
            nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, 2, 1),
        )

    def forward(self, z):
        return self.net(z)


class VAE(nn.Module):
    """Gaussian encoder q(z|x) = N(mu, exp(logvar)) and a deterministic decoder."""

    def __init__(self, channels: int = 1, latent_dim: int = 10):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(channels, latent_dim)
        self.decoder = Decoder(channels, latent_dim)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x) -> Output:
        mu, logvar = self.encoder(x)
        z = reparameterise(mu, logvar, torch.randn_like(mu))
        return Output(mu, logvar, z, self.decoder(z))
