// Models dirty-page tracking of drivers/vfio/vfio_iommu_type1.c (v6.12):
// VFIO_IOMMU_DIRTY_PAGES (START, STOP, GET_BITMAP), the per-dma bitmaps (one bit per
// minimum page plus 64 spare bits for shifting), update_user_bitmap (all pages dirty while
// any IOMMU-backed group has not declared itself in pinned-page scope), and the re-population
// with the pages drivers still pin after every report.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Iommu.Type1;

internal sealed partial class VfioIommu
{
    private const string DirtyIoctl = "VFIO_IOMMU_DIRTY_PAGES";

    private long DirtyPagesIoctl(ulong arg)
    {
        const uint mask = VfioType1Flags.DirtyStart | VfioType1Flags.DirtyStop | VfioType1Flags.DirtyGetBitmap;
        if (!V2)
        {
            return ErrorReason.Fail(Errno.EACCES, $"{DirtyIoctl}: dirty tracking needs a TYPE1v2 container");
        }

        int err = VfioArg.CopyIn(arg, VfioIommuType1DirtyBitmap.MinSz, out VfioIommuType1DirtyBitmap dirty, DirtyIoctl);
        if (err != 0)
        {
            return err;
        }

        if ((dirty.Flags & ~mask) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{DirtyIoctl}: unknown flags 0x{dirty.Flags & ~mask:x}");
        }

        if (dirty.Flags == 0 || (dirty.Flags & (dirty.Flags - 1)) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{DirtyIoctl}: exactly one of START, STOP and GET_BITMAP is required (flags 0x{dirty.Flags:x})");
        }

        if (dirty.Flags == VfioType1Flags.DirtyStart)
        {
            _lock.Lock();
            try
            {
                if (_dirtyTracking)
                {
                    return 0;
                }

                err = BitmapAllocAllLocked(MinPgsize);
                if (err == 0)
                {
                    _dirtyTracking = true;
                }

                return err;
            }
            finally
            {
                _lock.Unlock();
            }
        }

        if (dirty.Flags == VfioType1Flags.DirtyStop)
        {
            _lock.Lock();
            try
            {
                if (_dirtyTracking)
                {
                    _dirtyTracking = false;
                    for (VfioDma? n = _dmas.First(); n is not null; n = VfioDmaTree.Next(n))
                    {
                        n.Bitmap = null;
                    }
                }

                return 0;
            }
            finally
            {
                _lock.Unlock();
            }
        }

        return GetDirtyBitmapIoctl(arg, dirty.Argsz);
    }

    private long GetDirtyBitmapIoctl(ulong arg, uint argsz)
    {
        int rangeSize = VfioArg.SizeOf<VfioIommuType1DirtyBitmapGet>();
        uint dataSize = argsz - VfioIommuType1DirtyBitmap.MinSz;
        if (dataSize == 0 || dataSize < rangeSize)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{DirtyIoctl}: GET_BITMAP: argsz {argsz} leaves no room for struct vfio_iommu_type1_dirty_bitmap_get ({VfioIommuType1DirtyBitmap.MinSz + rangeSize} needed)");
        }

        if (UserMemory.Get(arg + VfioIommuType1DirtyBitmap.MinSz, out VfioIommuType1DirtyBitmapGet range) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{DirtyIoctl}: GET_BITMAP: cannot read the range");
        }

        // iova + size is tested, so a range ending exactly at 2^64 is refused too (v6.18 tests
        // the inclusive end instead; no profile is that new).
        if (range.Iova + range.Size < range.Iova)
        {
            return ErrorReason.Fail(OverflowErrno, $"{DirtyIoctl}: GET_BITMAP: iova 0x{range.Iova:x} + size 0x{range.Size:x} wraps past 2^64");
        }

        int err = CheckUserBitmap(range.Bitmap, range.Size, DirtyIoctl);
        if (err != 0)
        {
            return err;
        }

        _lock.Lock();
        try
        {
            ulong pgsize = MinPgsize;
            if (range.Bitmap.Pgsize != pgsize)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{DirtyIoctl}: GET_BITMAP: bitmap pgsize 0x{range.Bitmap.Pgsize:x} is not the minimum IOMMU page size 0x{pgsize:x}");
            }

            if ((range.Iova & (pgsize - 1)) != 0 || range.Size == 0 || (range.Size & (pgsize - 1)) != 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{DirtyIoctl}: GET_BITMAP: iova 0x{range.Iova:x} and size 0x{range.Size:x} must be non-zero multiples of 0x{pgsize:x}");
            }

            if (!_dirtyTracking)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{DirtyIoctl}: GET_BITMAP while dirty tracking is off");
            }

            return IovaDirtyBitmapLocked(range.Bitmap.Data, range.Iova, range.Size, pgsize);
        }
        finally
        {
            _lock.Unlock();
        }
    }

    /// <summary>vfio_iova_dirty_bitmap(): reports every mapping inside [iova, +size), which must not bisect one.</summary>
    private int IovaDirtyBitmapLocked(ulong bitmap, ulong iova, ulong size, ulong pgsize)
    {
        _lock.AssertHeld();
        ulong last = iova + size - 1;
        VfioDma? d = _dmas.Find(iova, iova);
        if (d is not null && d.Iova != iova)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{DirtyIoctl}: GET_BITMAP: the range starts inside mapping {d}");
        }

        d = _dmas.Find(last, last);
        if (d is not null && d.Last != last)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{DirtyIoctl}: GET_BITMAP: the range ends inside mapping {d}");
        }

        for (VfioDma? n = _dmas.First(); n is not null; n = VfioDmaTree.Next(n))
        {
            if (n.Iova < iova)
            {
                continue;
            }

            if (n.Iova > last)
            {
                break;
            }

            if (UpdateUserBitmapLocked(bitmap, n, iova, pgsize) != 0)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"{DirtyIoctl}: GET_BITMAP: cannot write the bitmap at 0x{bitmap:x}");
            }
        }

        return 0;
    }

    /// <summary>
    /// update_user_bitmap(): copies the dma's bits into the user bitmap at the dma's bit
    /// offset from <paramref name="baseIova"/>. As the kernel does, the dma's own bitmap is
    /// shifted in place (its spare word makes room) and the low bits of a shared leading word
    /// are read from the user and merged. On success the dma's bits are reset to exactly the
    /// pages drivers pin. 0 or -EFAULT.
    /// </summary>
    private int UpdateUserBitmapLocked(ulong bitmap, VfioDma dma, ulong baseIova, ulong pgsize)
    {
        _lock.AssertHeld();
        int pgshift = System.Numerics.BitOperations.TrailingZeroCount(pgsize);
        ulong nbits = dma.Size >> pgshift;
        ulong bitOffset = (dma.Iova - baseIova) >> pgshift;
        ulong copyOffset = bitOffset / 64;
        int shift = (int)(bitOffset % 64);
        ulong[] bits = dma.Bitmap!;
        if (_numNonPinnedGroups != 0 && dma.IommuMapped)
        {
            SetBits(bits, 0, nbits);
        }

        int words = (int)((nbits + (ulong)shift + 63) / 64);
        ulong at = bitmap + (copyOffset * 8);
        if (shift != 0)
        {
            for (int i = words - 1; i > 0; i--)
            {
                bits[i] = (bits[i] << shift) | (bits[i - 1] >> (64 - shift));
            }

            bits[0] <<= shift;
            if (UserMemory.Get(at, out ulong leftover) != 0)
            {
                return Errno.EFAULT.Negative();
            }

            bits[0] |= leftover & ((1UL << shift) - 1);
        }

        if (UserMemory.CopyToUser(at, System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan(0, words))) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        PopulateBitmapLocked(dma, pgsize);
        return 0;
    }

    /// <summary>bitmap_set(): sets <paramref name="count"/> bits from <paramref name="start"/>, a word at a time.</summary>
    private static void SetBits(ulong[] bits, ulong start, ulong count)
    {
        while (count != 0)
        {
            int offset = (int)(start % 64);
            int n = (int)Math.Min((ulong)(64 - offset), count);
            bits[start / 64] |= (n == 64 ? ulong.MaxValue : (1UL << n) - 1) << offset;
            start += (ulong)n;
            count -= (ulong)n;
        }
    }

    /// <summary>
    /// vfio_dma_bitmap_alloc(): one bit per minimum page plus one spare word for shifting. A
    /// mapping of more than DIRTY_BITMAP_PAGES_MAX pages cannot be tracked: -EINVAL, both when
    /// vfio_dma_do_map allocates the bitmap of a new mapping while tracking runs and when
    /// DIRTY_PAGES START allocates one for every mapping.
    /// </summary>
    private int BitmapAllocLocked(VfioDma dma, ulong pgsize)
    {
        _lock.AssertHeld();
        ulong npages = dma.Size / pgsize;
        if (npages > DirtyBitmapPagesMax)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"dirty tracking: {dma} has {npages} pages, more than a bitmap can track ({DirtyBitmapPagesMax})");
        }

        dma.Bitmap = new ulong[((npages + 63) / 64) + 1];
        return 0;
    }

    /// <summary>vfio_dma_bitmap_alloc_all(): a bitmap for every dma, pre-set with the pages drivers pin; all or none.</summary>
    private int BitmapAllocAllLocked(ulong pgsize)
    {
        _lock.AssertHeld();
        for (VfioDma? n = _dmas.First(); n is not null; n = VfioDmaTree.Next(n))
        {
            int ret = BitmapAllocLocked(n, pgsize);
            if (ret != 0)
            {
                for (VfioDma? m = _dmas.First(); m is not null && m != n; m = VfioDmaTree.Next(m))
                {
                    m.Bitmap = null;
                }

                return ret;
            }

            PopulateBitmapLocked(n, pgsize);
        }

        return 0;
    }

    /// <summary>vfio_dma_populate_bitmap(): the bitmap becomes exactly the pages in the dma's pfn_list.</summary>
    private void PopulateBitmapLocked(VfioDma dma, ulong pgsize)
    {
        _lock.AssertHeld();
        ulong[] bits = dma.Bitmap!;
        Array.Clear(bits);
        if (dma.PfnList is null)
        {
            return;
        }

        int pgshift = System.Numerics.BitOperations.TrailingZeroCount(pgsize);
        foreach (VfioPfn p in dma.PfnList)
        {
            SetBits(bits, (p.Iova - dma.Iova) >> pgshift, 1);
        }
    }

    /// <summary>vfio_iommu_populate_bitmap_full(): every page of every mapping dirty.</summary>
    private void PopulateBitmapFullLocked()
    {
        _lock.AssertHeld();
        int pgshift = MinPgshift;
        for (VfioDma? n = _dmas.First(); n is not null; n = VfioDmaTree.Next(n))
        {
            if (n.Bitmap is not null)
            {
                SetBits(n.Bitmap, 0, n.Size >> pgshift);
            }
        }
    }

    /// <summary>Marks [<paramref name="offset"/>, +<paramref name="length"/>) bytes of the dma dirty (pins and dma_rw writes while tracking).</summary>
    private void MarkDirtyLocked(VfioDma dma, ulong offset, ulong length)
    {
        _lock.AssertHeld();
        if (!_dirtyTracking || dma.Bitmap is null || length == 0)
        {
            return;
        }

        int pgshift = MinPgshift;
        ulong first = offset >> pgshift;
        ulong last = (offset + length - 1) >> pgshift;
        SetBits(dma.Bitmap, first, last - first + 1);
    }
}
