# Lab 1: IOMMU groups and viability, in the shell.
# Read the handout first: vfio-sim lab show 1 (or docs/labs/lab01-*.md).
# This file is your solution: the commands of `vfio-sim shell`, one per line, that the
# grader runs on its own machine. Try them interactively first: vfio-sim shell
# Lines starting with # are comments.

# TODO: find the device's IOMMU group and what else is in it, e.g.
#   lspci -nn
#   readlink /sys/bus/pci/devices/0000:01:00.0/iommu_group
# TODO: make the group viable and open it, as the handout asks.
