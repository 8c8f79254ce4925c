// Models mtty_dev_ops, mtty_migration_ops and mtty_log_ops of samples/vfio-mdev/mtty.c
// (v6.12; v6.1 has no close_device, mig_ops or log_ops, gated by MttyFeatures): the vfio
// device ops of one mtty instance. read/write split an access into aligned 4/2/1-byte
// pieces, each one mdev_access(); any failure is EFAULT. There is no mmap and no
// dma_unmap (mtty never pins).

using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>The vfio_device_ops of one mtty instance.</summary>
internal sealed class MttyOps : VfioDeviceOps, IVfioMigrationOps, IVfioLogOps
{
    private readonly MttyDevice _dev;

    public MttyOps(MttyDevice dev) => _dev = dev;

    /// <inheritdoc/>
    public override string Name => "vfio-mtty";

    /// <inheritdoc/>
    public override int Init(VfioDevice device) => _dev.Init();

    /// <inheritdoc/>
    public override void Release(VfioDevice device) => _dev.Release();

    /// <inheritdoc/>
    public override void CloseDevice(VfioDevice device) => _dev.Close();

    /// <inheritdoc/>
    public override long Read(VfioDevice device, ulong buf, long count, ref long pos) => Rw(buf, count, ref pos, write: false);

    /// <inheritdoc/>
    public override long Write(VfioDevice device, ulong buf, long count, ref long pos) => Rw(buf, count, ref pos, write: true);

    /// <inheritdoc/>
    public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => _dev.Ioctl(cmd, arg);

    /// <inheritdoc/>
    public ulong MigrationFlags(VfioDevice device)
        => _dev.Migrates ? VfioFeature.MigrationStopCopy | VfioFeature.MigrationP2p | VfioFeature.MigrationPreCopy : 0;

    /// <inheritdoc/>
    public int MigrationSetState(VfioDevice device, VfioDeviceMigState newState, out SimFile? dataFile) => _dev.SetState(newState, out dataFile);

    /// <inheritdoc/>
    public int MigrationGetState(VfioDevice device, out VfioDeviceMigState state)
    {
        state = _dev.GetState();
        return 0;
    }

    /// <inheritdoc/>
    public int MigrationGetDataSize(VfioDevice device, out ulong stopCopyLength)
    {
        stopCopyLength = (ulong)_dev.DataSize;
        return 0;
    }

    /// <inheritdoc/>
    public bool HasLogOps(VfioDevice device) => _dev.Migrates;

    /// <inheritdoc/>
    public int LogStart(VfioDevice device, IReadOnlyList<(ulong Iova, ulong Length)> ranges, ref ulong pageSize) => 0;

    /// <inheritdoc/>
    public int LogStop(VfioDevice device) => 0;

    /// <inheritdoc/>
    public int LogReadAndClear(VfioDevice device, ulong iova, ulong length) => 0;

    private long Rw(ulong buf, long count, ref long pos, bool write)
    {
        long done = 0;
        Span<byte> piece = stackalloc byte[4];
        while (count > 0)
        {
            int n = count >= 4 && pos % 4 == 0 ? 4 : count >= 2 && pos % 2 == 0 ? 2 : 1;
            Span<byte> p = piece[..n];
            p.Clear();
            if (write && UserMemory.CopyFromUser(p, buf) != 0)
            {
                return Errno.EFAULT.Negative();
            }

            if (_dev.Access(p, pos, write) <= 0)
            {
                return ErrorReason.Fail(Errno.EFAULT, $"{(write ? "write" : "read")}: offset 0x{pos:x} is in no mtty region");
            }

            if (!write && UserMemory.CopyToUser(buf, p) != 0)
            {
                return Errno.EFAULT.Negative();
            }

            count -= n;
            done += n;
            pos += n;
            buf += (ulong)n;
        }

        return done;
    }
}
