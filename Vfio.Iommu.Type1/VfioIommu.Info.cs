// Models VFIO_IOMMU_GET_INFO of drivers/vfio/vfio_iommu_type1.c (v6.12):
// vfio_iommu_type1_get_info with the MIGRATION, DMA_AVAIL and IOVA_RANGE capabilities, in
// that order, through the capability-chain protocol. Two things follow the profile
// (VfioCoreFeatures, both v6.6): the chain's layout (8-byte aligned entries, or packed as
// on v6.1) and how much of the fixed struct is copied back (min(argsz, 24), or up to
// cap_offset when argsz reaches it and the minimal 16 bytes otherwise, as on v6.1).

using System.Runtime.InteropServices;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;

namespace Vfio.Iommu.Type1;

internal sealed partial class VfioIommu
{
    private const string InfoIoctl = "VFIO_IOMMU_GET_INFO";
    private const int InfoCapsScratch = 256;

    private long GetInfoIoctl(ulong arg)
    {
        int err = VfioArg.CopyIn(arg, VfioIommuType1Info.MinSz, out VfioIommuType1Info info, InfoIoctl);
        if (err != 0)
        {
            return err;
        }

        int outSz = CopyBackSize(info.Argsz, ref info.CapOffset);

        // The chain is built on the stack: MIGRATION (32) + DMA_AVAIL (16) + IOVA_RANGE
        // (16 + 16 per range) fits with up to 12 ranges; a longer list moves it to the heap.
        var caps = new VfioInfoCaps(Kernel.Profile, stackalloc byte[InfoCapsScratch]);
        _lock.Lock();
        try
        {
            info.Flags = VfioType1Flags.InfoPgsizes;
            info.IovaPgsizes = _pgsizeBitmap;
            err = BuildInfoCapsLocked(ref caps);
        }
        finally
        {
            _lock.Unlock();
        }

        if (err != 0)
        {
            return err;
        }

        if (!caps.IsEmpty)
        {
            info.Flags |= VfioType1Flags.InfoCaps;
            if (caps.CopyOut(arg, VfioArg.SizeOf<VfioIommuType1Info>(), ref info.Argsz, ref info.CapOffset) != 0)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"{InfoIoctl}: cannot write the capability chain");
            }
        }

        return VfioArg.CopyOut(arg, info, outSz) != 0 ? Errno.EFAULT.Negative() : 0;
    }

    /// <summary>
    /// The bytes of struct vfio_iommu_type1_info GET_INFO copies back. v6.6+: the struct is
    /// zeroed first and min(argsz, sizeof) bytes go back, its trailing pad included. Before:
    /// offsetofend(cap_offset) (20) when argsz reaches it, with cap_offset cleared, else only
    /// the minimal 16 bytes, so the pad and anything past 20 are never written.
    /// </summary>
    private int CopyBackSize(uint argsz, ref uint capOffset)
    {
        const int CapSz = 20;
        if (Kernel.Profile.Has(VfioCoreFeatures.InfoCopiesBackUpToArgsz))
        {
            return (int)Math.Min(argsz, (uint)VfioArg.SizeOf<VfioIommuType1Info>());
        }

        if (argsz < CapSz)
        {
            return VfioIommuType1Info.MinSz;
        }

        capOffset = 0;
        return CapSz;
    }

    /// <summary>The capability chain of GET_INFO: MIGRATION, DMA_AVAIL, then IOVA_RANGE when the list is not empty.</summary>
    private int BuildInfoCapsLocked(ref VfioInfoCaps caps)
    {
        _lock.AssertHeld();
        var mig = new VfioIommuType1InfoCapMigration
        {
            Header = new VfioInfoCapHeader { Id = VfioCapId.Type1Migration, Version = 1 },
            Flags = 0,
            PgsizeBitmap = MinPgsize,
            MaxDirtyBitmapSize = DirtyBitmapSizeMax,
        };
        int ret = caps.Add(in mig);
        if (ret != 0)
        {
            return ret;
        }

        var avail = new VfioIommuType1InfoDmaAvail
        {
            Header = new VfioInfoCapHeader { Id = VfioCapId.Type1DmaAvail, Version = 1 },
            Avail = _dmaAvail,
        };
        ret = caps.Add(in avail);
        if (ret != 0 || _iovaList.Count == 0)
        {
            return ret;
        }

        // vfio_iommu_iova_add_cap(): the header and then the ranges, written in place.
        int headSize = VfioArg.SizeOf<VfioIommuType1InfoCapIovaRange>();
        int rangeSize = VfioArg.SizeOf<VfioIovaRange>();
        ret = caps.Add(headSize + (_iovaList.Count * rangeSize), VfioCapId.Type1IovaRange, 1, out Span<byte> cap);
        if (ret != 0)
        {
            return ret;
        }

        uint nrIovas = (uint)_iovaList.Count;
        MemoryMarshal.Write(cap[VfioArg.SizeOf<VfioInfoCapHeader>()..], in nrIovas);
        for (int i = 0; i < _iovaList.Count; i++)
        {
            var range = new VfioIovaRange { Start = _iovaList[i].Start, End = _iovaList[i].End };
            MemoryMarshal.Write(cap[(headSize + (i * rangeSize))..], in range);
        }

        return 0;
    }

    /// <summary>The usable IOVA ranges (for tests and tools).</summary>
    internal IReadOnlyList<VfioIova> IovaList
    {
        get
        {
            _lock.Lock();
            try
            {
                return [.. _iovaList];
            }
            finally
            {
                _lock.Unlock();
            }
        }
    }
}
