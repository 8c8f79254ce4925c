# Lab 1: IOMMU groups and viability — a solution (vfio-sim lab show 1).
# Hand 0000:02:00.1 to user space: its group also holds port 0 of the same card.

# Which group, and who else is in it?
readlink /sys/bus/pci/devices/0000:02:00.1/iommu_group
ls /sys/kernel/iommu_groups/4/devices
lspci -k -s 02:00

# The target to vfio-pci: off igb first, then driver_override and drivers_probe.
echo 0000:02:00.1 > /sys/bus/pci/devices/0000:02:00.1/driver/unbind
echo vfio-pci > /sys/bus/pci/devices/0000:02:00.1/driver_override
echo 0000:02:00.1 > /sys/bus/pci/drivers_probe

# The group's node is there now, but the group is not viable: port 0 is still on igb.
open /dev/vfio/4
VFIO_GROUP_GET_STATUS 3

# Port 0 too: off igb, onto vfio-pci.
echo 0000:02:00.0 > /sys/bus/pci/devices/0000:02:00.0/driver/unbind
echo vfio-pci > /sys/bus/pci/devices/0000:02:00.0/driver_override
echo 0000:02:00.0 > /sys/bus/pci/drivers_probe

# Every function of the group on vfio-pci: viable.
VFIO_GROUP_GET_STATUS 3
close 3
