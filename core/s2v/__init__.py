"""Sound → video (Lee et al., ECCV 2022): StyleGAN generators, sound inversion, latent walk."""
