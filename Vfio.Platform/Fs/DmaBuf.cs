// Models the exporter side of drivers/dma-buf/dma-buf.c (v6.12) as far as a driver that
// hands user space a buffer of its own pages needs it: dma_buf_export() makes a buffer of
// a size with the exporter's ops and private data, backed by a pseudo file; dma_buf_fd()
// installs that file in the caller's table; mmap() of the fd checks the window against the
// size and asks the exporter; the exporter's release runs when the file's last reference
// goes (every fd closed and every mapping gone).
//
// Not modelled: attachments and map_dma_buf/unmap_dma_buf (no importer exists here), the
// reservation object and fences, poll, the DMA_BUF_IOCTL_* ioctls (sync, set name),
// llseek, /proc fdinfo and debugfs, the module reference the export takes.
//
// Lock rules: none of its own; the exporter's ops take the exporter's locks.

using Vfio.Kernel;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Platform.Fs;

/// <summary>struct dma_buf_ops: what the exporter does.</summary>
public interface IDmaBufOps
{
    /// <summary>-&gt;mmap(): set up <paramref name="vma"/> (its window is already checked against the size); 0 or -errno.</summary>
    int Mmap(DmaBuf buf, Vma vma);

    /// <summary>-&gt;release(): the buffer's last reference is gone.</summary>
    void Release(DmaBuf buf);
}

/// <summary>struct dma_buf: a buffer shared through a file descriptor.</summary>
public sealed class DmaBuf
{
    private DmaBuf(IDmaBufOps ops, long size, object? priv)
    {
        Ops = ops;
        Size = size;
        Priv = priv;
    }

    /// <summary>-&gt;ops.</summary>
    public IDmaBufOps Ops { get; }

    /// <summary>-&gt;size in bytes.</summary>
    public long Size { get; }

    /// <summary>-&gt;priv: the exporter's object.</summary>
    public object? Priv { get; }

    /// <summary>-&gt;file: the pseudo file behind every fd of the buffer.</summary>
    public SimFile File { get; private set; } = null!;

    /// <summary>True once the exporter's release ran.</summary>
    public bool IsReleased { get; private set; }

    /// <summary>
    /// dma_buf_export(): a buffer of <paramref name="size"/> bytes, its file holding the one
    /// reference the exporter owns until it is installed or put. Null with -EINVAL for a
    /// missing ops table (the kernel WARNs) or a size that is not positive.
    /// </summary>
    public static DmaBuf? Export(SimKernel kernel, IDmaBufOps ops, long size, object? priv, out int error)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (Warn.On(kernel, ops is null, "dma_buf_export: no ops") || size <= 0)
        {
            error = Errno.EINVAL.Negative();
            return null;
        }

        var buf = new DmaBuf(ops!, size, priv);
        buf.File = new SimFile(kernel, DmaBufFops.Instance, "/dmabuf:", OpenFlags.O_RDWR, null, buf);
        error = 0;
        return buf;
    }

    /// <summary>
    /// dma_buf_fd(): installs the buffer's file (its exporter reference) in the current
    /// process's table; the fd, or -EINVAL with no process, or the table's -EMFILE.
    /// </summary>
    public int InstallFd(OpenFlags flags)
    {
        if (SimProcess.Current is not { } proc)
        {
            return Errno.EINVAL.Negative();
        }

        int fd = proc.GetUnusedFd((flags & OpenFlags.O_CLOEXEC) != 0);
        if (fd < 0)
        {
            return fd;
        }

        proc.FdInstall(fd, File);
        return fd;
    }

    /// <summary>get_dma_buf(): one more reference on the file.</summary>
    public void Get() => File.Get();

    /// <summary>dma_buf_put().</summary>
    public void Put() => File.Put();

    internal void ReleaseFromFile()
    {
        IsReleased = true;
        Ops.Release(this);
    }

    private sealed class DmaBufFops : FileOperations
    {
        public static readonly DmaBufFops Instance = new();

        public override bool CanMmap => true;

        // dma_buf_mmap_internal(): the window must lie inside the buffer.
        public override int Mmap(SimFile file, Vma vma)
        {
            var buf = (DmaBuf)file.PrivateData!;
            ulong pages = (ulong)(buf.Size >> PhysMem.PageShift);
            ulong vmaPages = vma.Length >> PhysMem.PageShift;
            if (vma.PgOff + vmaPages < vma.PgOff || vma.PgOff + vmaPages > pages)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"dma-buf mmap: pages [{vma.PgOff}, {vma.PgOff + vmaPages}) are past the buffer's {pages}");
            }

            return buf.Ops.Mmap(buf, vma);
        }

        public override void Release(SimFile file) => ((DmaBuf)file.PrivateData!).ReleaseFromFile();
    }
}
