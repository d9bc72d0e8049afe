"""Getting a build out to a Pi or to CI: the root filesystem, artifacts, their ELF checks."""
