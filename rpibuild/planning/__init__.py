"""Planning a build: the stages and where each runs, names, keys, the rendered Dockerfile.

Pure: reads the validated profile and host facts, runs nothing."""
