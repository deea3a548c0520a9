"""Video → audio (VTA-SAM on VTA-LDM): conditioning, latent diffusion, mel VAE, vocoder."""
