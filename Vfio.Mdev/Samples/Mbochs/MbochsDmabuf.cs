// Models struct mbochs_dmabuf and its dma_buf_ops of samples/vfio-mdev/mbochs.c (v6.12):
// a snapshot of a display mode holding a reference on each framebuffer page it covers,
// exported as a dma-buf on demand. mmap of the dma-buf maps those pages (MAP_SHARED only);
// release drops the page references and, under the device's ops_lock, forgets the export,
// freeing the object when the device's close already unlinked it.
//
// Kernel behaviour kept as it is: the release takes the device's lock whatever became of
// the device (the kernel touches freed memory when the mdev is gone by then; here the
// device object is still reachable), and an object released while the device stays open
// stays listed with its page references already dropped, so a later export of it drops
// them a second time.

using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;

namespace Vfio.Mdev.Samples.Mbochs;

/// <summary>struct mbochs_mode: the framebuffer the dispi registers describe.</summary>
public readonly record struct MbochsMode(uint DrmFormat, uint BytesPerPixel, uint Width, uint Height, uint Stride, ulong Offset, ulong Size);

/// <summary>struct mbochs_dmabuf: one exported (or exportable) plane.</summary>
public sealed class MbochsDmabuf : IDmaBufOps
{
    internal MbochsDmabuf(MbochsDevice device, MbochsMode mode, uint id, long[] pages)
    {
        Device = device;
        Mode = mode;
        Id = id;
        Pages = pages;
    }

    /// <summary>-&gt;mdev_state.</summary>
    public MbochsDevice Device { get; }

    /// <summary>-&gt;mode.</summary>
    public MbochsMode Mode { get; }

    /// <summary>-&gt;id (the dmabuf_id of QUERY_GFX_PLANE).</summary>
    public uint Id { get; }

    /// <summary>-&gt;pages: one reference each.</summary>
    public IReadOnlyList<long> Pages { get; }

    /// <summary>-&gt;buf: the exported dma-buf, null until GET_GFX_DMABUF and after its release.</summary>
    public DmaBuf? Buf { get; internal set; }

    /// <summary>-&gt;unlinked: the device was closed while the dma-buf lived.</summary>
    public bool Unlinked { get; internal set; }

    /// <summary>mbochs_mmap_dmabuf(): MAP_SHARED only; the pages are mapped at once.</summary>
    public int Mmap(DmaBuf buf, Vma vma)
    {
        if ((vma.Flags & VmFlags.VM_SHARED) == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mbochs dma-buf {Id} mmap: MAP_SHARED only");
        }

        // mbochs_dmabuf_vm_fault() hands out pages[pgoff] with a reference; every page of the
        // window is inside the buffer (dma_buf_mmap_internal checked), so map them now.
        for (ulong a = vma.Start; a < vma.End; a += (ulong)PhysMem.PageSize)
        {
            ulong pgoff = vma.PgOff + ((a - vma.Start) >> PhysMem.PageShift);
            int err = KernelPages.InsertPage(vma, a, ((long[])Pages)[(int)pgoff]);
            if (err != 0)
            {
                return err;
            }
        }

        return 0;
    }

    /// <summary>mbochs_release_dmabuf().</summary>
    public void Release(DmaBuf buf)
    {
        PhysMem mem = Device.Core.Machine.Memory;
        foreach (long pfn in Pages)
        {
            KernelPages.PutPage(mem, pfn);
        }

        Device.OpsLock.Lock();
        Buf = null;
        Device.OpsLock.Unlock();
    }
}
