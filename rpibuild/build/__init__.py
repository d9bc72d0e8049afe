"""Building: the base images, the pinned sources, the build context and the stage pipeline."""
