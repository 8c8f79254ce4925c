// Models the ioctl handlers of drivers/vfio/pci/vfio_pci_core.c (v6.12):
// VFIO_DEVICE_GET_INFO, GET_REGION_INFO (with the MSIX_MAPPABLE cap on the MSI-X BAR),
// GET_IRQ_INFO, SET_IRQS (the shared header checks, then the per-index handler under
// igate), VFIO_DEVICE_RESET and vfio_pci_core_ioctl_feature (the low-power features are in
// RuntimePm.cs, the VF token in Sriov.cs). GET_PCI_HOT_RESET_INFO and PCI_HOT_RESET live in
// HotReset.cs, VFIO_DEVICE_IOEVENTFD in Ioeventfd.cs.

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Pci;

namespace Vfio.Pci;

public sealed partial class VfioPciCoreDevice
{
    // offsetofend(struct vfio_iommu_type1_info, cap_offset): before v6.6 GET_INFO filled
    // cap_offset only for callers whose argsz reaches it (the kernel reused that constant; 20).
    private const int DeviceInfoCapSz = 20;

    // vfio-pci registers no device-specific regions here, so the totals are the fixed ones.
    private const int NumRegions = VfioPciIndex.NumRegions;

    /// <summary>vfio_pci_core_ioctl().</summary>
    internal long Ioctl(uint cmd, ulong arg) => cmd switch
    {
        VfioIoctl.DeviceGetInfo => GetInfo(arg),
        VfioIoctl.DeviceGetIrqInfo => GetIrqInfo(arg),
        VfioIoctl.DeviceGetRegionInfo => GetRegionInfo(arg),
        VfioIoctl.DeviceSetIrqs => SetIrqs(arg),
        VfioIoctl.DeviceReset => Reset(),
        VfioIoctl.DeviceGetPciHotResetInfo => GetPciHotResetInfo(arg),
        VfioIoctl.DevicePciHotReset => PciHotReset(arg),
        VfioIoctl.DeviceIoeventfd => IoeventfdIoctl(arg),
        _ => ErrorReason.Fail(Errno.ENOTTY, $"{VfioIoctl.Name(cmd)}: not a vfio-pci device ioctl"),
    };

    /// <summary>
    /// vfio_pci_ioctl_get_info(): flags PCI (+RESET), 9 regions, 5 IRQ indexes. What is
    /// copied back follows the profile (<see cref="VfioCoreFeatures.InfoCopiesBackUpToArgsz"/>):
    /// v6.6+ zeroes the struct and copies min(argsz, 24) bytes; before, 20 bytes with
    /// cap_offset cleared when argsz reaches cap_offset, else the minimal 16.
    /// </summary>
    private long GetInfo(ulong arg)
    {
        const string name = "VFIO_DEVICE_GET_INFO";
        int err = VfioArg.CopyIn(arg, VfioDeviceInfo.MinSz, out VfioDeviceInfo info, name);
        if (err != 0)
        {
            return err;
        }

        int outSz = VfioDeviceInfo.MinSz;
        if (Core.Kernel.Profile.Has(VfioCoreFeatures.InfoCopiesBackUpToArgsz))
        {
            outSz = (int)Math.Min(info.Argsz, (uint)VfioArg.SizeOf<VfioDeviceInfo>());
        }
        else if (info.Argsz >= DeviceInfoCapSz)
        {
            outSz = DeviceInfoCapSz;
            info.CapOffset = 0;
        }

        info.Flags = VfioDeviceFlags.Pci | (ResetWorks ? VfioDeviceFlags.Reset : 0);
        info.NumRegions = NumRegions;
        info.NumIrqs = VfioPciIndex.NumIrqs;
        return VfioArg.CopyOut(arg, info, outSz) != 0
            ? ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot write the answer to 0x{arg:x}")
            : 0;
    }

    /// <summary>vfio_pci_ioctl_get_region_info().</summary>
    private long GetRegionInfo(ulong arg)
    {
        const string name = "VFIO_DEVICE_GET_REGION_INFO";
        int err = VfioArg.CopyIn(arg, VfioRegionInfo.MinSz, out VfioRegionInfo info, name);
        if (err != 0)
        {
            return err;
        }

        // The only chain here is BAR MSI-X's header-only MSIX_MAPPABLE: built on the stack.
        var caps = new VfioInfoCaps(Core.Kernel.Profile, stackalloc byte[16]);
        switch (info.Index)
        {
            case VfioPciIndex.Config:
                info.Offset = (ulong)VfioPciIndex.IndexToOffset(VfioPciIndex.Config);
                info.Size = (ulong)Pdev.ConfigSize;
                info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write;
                break;
            case <= VfioPciIndex.Bar5:
                int bar = (int)info.Index;
                info.Offset = (ulong)VfioPciIndex.IndexToOffset(bar);
                info.Size = (ulong)Pdev.ResourceLength(bar);
                if (info.Size == 0)
                {
                    info.Flags = 0;
                    break;
                }

                info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write;
                if (_barMmapSupported[bar])
                {
                    info.Flags |= VfioRegionFlags.Mmap;
                    if (bar == MsixBar)
                    {
                        // msix_mmappable_cap(): header only, version 1.
                        int ret = caps.Add(VfioArg.SizeOf<VfioInfoCapHeader>(), VfioCapId.RegionMsixMappable, 1, out _);
                        if (ret != 0)
                        {
                            return ErrorReason.Fail(Errno.ENOMEM, $"{name}: cannot allocate the capability chain of BAR{bar}");
                        }
                    }
                }

                break;
            case VfioPciIndex.Rom:
                info.Offset = (ulong)VfioPciIndex.IndexToOffset(VfioPciIndex.Rom);
                info.Flags = 0;
                info.Size = (ulong)Pdev.ResourceLength(PciDevice.RomBarIndex);
                if (info.Size == 0)
                {
                    break;
                }

                // Is an image really there? pci_map_rom with memory decode turned on.
                ushort cmd = MemoryLockAndEnable();
                try
                {
                    if (MapRomImageSize() > 0)
                    {
                        info.Flags = VfioRegionFlags.Read;
                    }
                    else
                    {
                        info.Size = 0;
                    }
                }
                finally
                {
                    MemoryUnlockAndRestore(cmd);
                }

                break;
            case VfioPciIndex.Vga:
                if (!HasVga)
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"{name}: {Pname} has no VGA region ({(Pdev.IsVga ? "vfio-pci's disable_vga is set" : "not a VGA device")})");
                }

                info.Offset = (ulong)VfioPciIndex.IndexToOffset(VfioPciIndex.Vga);
                info.Size = VgaRegionSize;
                info.Flags = VfioRegionFlags.Read | VfioRegionFlags.Write;
                break;
            default:
                return ErrorReason.Fail(Errno.EINVAL, $"{name}: index {info.Index} is not below the {NumRegions} regions of {Pname}");
        }

        if (!caps.IsEmpty)
        {
            info.Flags |= VfioRegionFlags.Caps;
            if (caps.CopyOut(arg, VfioArg.SizeOf<VfioRegionInfo>(), ref info.Argsz, ref info.CapOffset) != 0)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot write the capability chain to 0x{arg + (ulong)VfioArg.SizeOf<VfioRegionInfo>():x}");
            }
        }

        return VfioArg.CopyOut(arg, info, VfioRegionInfo.MinSz) != 0
            ? ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot write the answer to 0x{arg:x}")
            : 0;
    }

    /// <summary>vfio_pci_ioctl_get_irq_info(): index &lt; 5 (ERR only on PCI Express functions).</summary>
    private long GetIrqInfo(ulong arg)
    {
        const string name = "VFIO_DEVICE_GET_IRQ_INFO";
        int err = VfioArg.CopyIn(arg, VfioIrqInfo.MinSz, out VfioIrqInfo info, name);
        if (err != 0)
        {
            return err;
        }

        if (info.Index >= VfioPciIndex.NumIrqs)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{name}: index {info.Index} is not below the {VfioPciIndex.NumIrqs} IRQ indexes");
        }

        if (info.Index == VfioPciIndex.IrqErr && !Pdev.IsPcie)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{name}: {Pname} is not PCI Express, so it has no ERR (AER) index");
        }

        info.Flags = VfioIrqInfoFlags.Eventfd;
        info.Count = (uint)IrqCount((int)info.Index);
        if (info.Index == VfioPciIndex.IrqIntx)
        {
            info.Flags |= VfioIrqInfoFlags.Maskable | VfioIrqInfoFlags.Automasked;
        }
        else if (info.Index != VfioPciIndex.IrqMsix || !Has(VfioPciFeatures.DynamicMsix) || Pdev.MsixCap == 0)
        {
            // has_dyn_msix: MSI-X can grow while enabled where the function has MSI-X (the x86 MSI domain allocates on demand).
            info.Flags |= VfioIrqInfoFlags.NoResize;
        }
        return VfioArg.CopyOut(arg, info, VfioIrqInfo.MinSz) != 0
            ? ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot write the answer to 0x{arg:x}")
            : 0;
    }

    /// <summary>
    /// vfio_pci_get_irq_count(): INTx 1 when the pin is set (0 with nointx and for VFs), MSI from the
    /// capability's multiple-message field, MSI-X from the table size, ERR 1 on PCI Express,
    /// REQ 1; any other index 0.
    /// </summary>
    internal int IrqCount(int index)
    {
        switch (index)
        {
            case VfioPciIndex.IrqIntx:
                return NoIntx || Pdev.IsVirtfn ? 0 : Pdev.ReadConfig(PciRegs.InterruptPin, 1) != 0 ? 1 : 0;
            case VfioPciIndex.IrqMsi:
                return Pdev.MsiCap == 0 ? 0 : 1 << (int)((Pdev.ReadConfig(Pdev.MsiCap + PciRegs.MsiFlags, 2) & PciRegs.MsiFlagsQmask) >> 1);
            case VfioPciIndex.IrqMsix:
                return Pdev.MsixCap == 0 ? 0 : (int)(Pdev.ReadConfig(Pdev.MsixCap + PciRegs.MsixFlags, 2) & PciRegs.MsixFlagsQsize) + 1;
            case VfioPciIndex.IrqErr:
                return Pdev.IsPcie ? 1 : 0;
            case VfioPciIndex.IrqReq:
                return 1;
            default:
                return 0;
        }
    }

    /// <summary>
    /// vfio_pci_ioctl_set_irqs(): the header, the count of its index, the shared checks, the
    /// payload copied in, then the handler under igate.
    /// </summary>
    private long SetIrqs(ulong arg)
    {
        const string name = "VFIO_DEVICE_SET_IRQS";
        VfioIrqSet hdr = default;
        if (VfioArg.CopyInPrefix(arg, VfioIrqSet.MinSz, ref hdr) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot read {VfioIrqSet.MinSz} bytes of the argument at 0x{arg:x}");
        }

        int max = IrqCount(hdr.Index < int.MaxValue ? (int)hdr.Index : -1);
        int ret = VfioIrqSetValidation.ValidateAndPrepare(hdr, max, VfioPciIndex.NumIrqs, out int dataSize);
        if (ret != 0)
        {
            return ret;
        }

        // At most 4 bytes for the one-vector ERR/REQ indexes; larger payloads belong to MSI/MSI-X.
        Span<byte> small = stackalloc byte[8];
        Span<byte> data = dataSize <= small.Length ? small[..dataSize] : new byte[dataSize];
        if (dataSize != 0 && UserMemory.CopyFromUser(data, arg + VfioIrqSet.MinSz) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{name}: cannot read {dataSize} data bytes at 0x{arg + VfioIrqSet.MinSz:x}");
        }

        _igate.Lock();
        try
        {
            return SetIrqsLocked(hdr.Flags, (int)hdr.Index, hdr.Start, hdr.Count, data);
        }
        finally
        {
            _igate.Unlock();
        }
    }

    /// <summary>vfio_pci_ioctl_reset(): only where the function reset worked at open; BAR mappings zapped and memory_lock held, in D0, a try-reset.</summary>
    private long Reset()
    {
        const string name = "VFIO_DEVICE_RESET";
        if (!ResetWorks)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{name}: {Pname} has no function reset that worked at open (GET_INFO shows no VFIO_DEVICE_FLAGS_RESET)");
        }

        ZapAndDownWriteMemoryLock();
        try
        {
            SetPowerStateD0();
            int rc = Pdev.TryResetFunction();
            return rc == Errno.EAGAIN.Negative()
                ? ErrorReason.Fail(Errno.EAGAIN, $"{name}: the device lock of {Pname} is held (an unbind or another reset); try again")
                : rc;
        }
        finally
        {
            MemoryLock.UpWrite();
        }
    }

    /// <summary>
    /// vfio_pci_core_ioctl_feature(): the three low-power features (SET and PROBE only) and
    /// PCI_VF_TOKEN for a vfio-pci PF (Sriov.cs); unknown ids -ENOTTY.
    /// </summary>
    internal int IoctlFeature(uint flags, ulong arg, ulong argsz)
    {
        uint feature = flags & VfioFeature.Mask;
        return feature switch
        {
            VfioFeature.LowPowerEntry => PmEntry(flags, argsz),
            VfioFeature.LowPowerEntryWithWakeup => PmEntryWithWakeup(flags, arg, argsz),
            VfioFeature.LowPowerExit => PmExit(flags, argsz),
            VfioFeature.PciVfToken => FeatureToken(flags, arg, argsz),
            _ => ErrorReason.Fail(Errno.ENOTTY, $"VFIO_DEVICE_FEATURE: vfio-pci has no feature {feature}"),
        };
    }

    /// <summary>vfio_pci_memory_lock_and_enable(): memory_lock for write, memory decode on; returns the COMMAND to restore.</summary>
    private ushort MemoryLockAndEnable()
    {
        MemoryLock.DownWrite();
        ushort cmd = (ushort)Pdev.ReadConfig(PciRegs.Command, 2);
        if ((cmd & PciRegs.CommandMemory) == 0)
        {
            Pdev.WriteConfig(PciRegs.Command, (uint)(cmd | PciRegs.CommandMemory), 2);
        }

        return cmd;
    }

    /// <summary>vfio_pci_memory_unlock_and_restore().</summary>
    private void MemoryUnlockAndRestore(ushort cmd)
    {
        Pdev.WriteConfig(PciRegs.Command, cmd, 2);
        MemoryLock.UpWrite();
    }
}
