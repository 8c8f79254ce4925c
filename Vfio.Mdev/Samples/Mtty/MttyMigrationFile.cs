// Models struct mtty_migration_file and mtty_save_fops / mtty_resume_fops of
// samples/vfio-mdev/mtty.c (v6.12): an anon-inode stream file holding struct mtty_data.
// Read returns what is filled past the file position; VFIO_MIG_GET_PRECOPY_INFO reports
// the unread bytes while the device is in a PRE_COPY state; a disabled file (state left,
// reset, close) answers ENODEV. The resume file takes writes up to mtty_data_size().
//
// Lock rules: _lock (migf->lock) protects the buffer, filled size and disabled flag; the
// precopy ioctl takes the device's state_mutex first, then _lock.

using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples.Mtty;

/// <summary>A migration data file of one mtty device.</summary>
internal sealed class MttyMigrationFile
{
    // Protects _data, _filled and _disabled (migf->lock).
    private readonly KMutex _lock;
    private readonly MttyDevice _dev;
    private readonly byte[] _data;
    private int _filled;
    private bool _disabled;

    public MttyMigrationFile(MttyDevice dev, bool saving)
    {
        _dev = dev;
        _lock = new KMutex(dev.Kernel, "mtty_migration_file.lock");
        _data = new byte[MttyDevice.HeaderSize + (2 * MttyPort.StreamSize)];
        File = AnonInodes.GetFile(dev.Kernel, "mtty_mig", saving ? SaveFops.Instance : ResumeFops.Instance, this, saving ? OpenFlags.O_RDONLY : OpenFlags.O_WRONLY);
    }

    public SimFile File { get; }

    public int FilledSize
    {
        get
        {
            _lock.Lock();
            int f = _filled;
            _lock.Unlock();
            return f;
        }
    }

    /// <summary>Appends saved bytes.</summary>
    public void Fill(ReadOnlySpan<byte> bytes)
    {
        _lock.Lock();
        bytes.CopyTo(_data.AsSpan(_filled));
        _filled += bytes.Length;
        _lock.Unlock();
    }

    /// <summary>The first <paramref name="size"/> bytes, or null when fewer were written.</summary>
    public byte[]? Snapshot(int size)
    {
        _lock.Lock();
        byte[]? r = _filled < size ? null : _data.AsSpan(0, size).ToArray();
        _lock.Unlock();
        return r;
    }

    /// <summary>mtty_disable_file().</summary>
    public void Disable()
    {
        _lock.Lock();
        _disabled = true;
        _filled = 0;
        File.Position = 0;
        _lock.Unlock();
    }

    private long SaveRead(ulong buf, long len, ref long pos)
    {
        _lock.Lock();
        try
        {
            if (_disabled)
            {
                return ErrorReason.Fail(Errno.ENODEV, "read: the mtty migration file was disabled (the device left the state that made it)");
            }

            if (pos > _filled)
            {
                return Errno.EINVAL.Negative();
            }

            long n = Math.Min(_filled - pos, len);
            if (n == 0)
            {
                return 0;
            }

            if (UserMemory.CopyToUser(buf, _data.AsSpan((int)pos, (int)n)) != 0)
            {
                return Errno.EFAULT.Negative();
            }

            pos += n;
            return n;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private long PrecopyIoctl(uint cmd, ulong arg, long pos)
    {
        if (cmd != VfioIoctl.MigGetPrecopyInfo)
        {
            return Errno.ENOTTY.Negative();
        }

        int err = VfioArg.CopyIn(arg, VfioPrecopyInfo.MinSz, out VfioPrecopyInfo info, "VFIO_MIG_GET_PRECOPY_INFO");
        if (err != 0)
        {
            return err;
        }

        return _dev.WithStateMutex(state =>
        {
            if (state is not (VfioDeviceMigState.PreCopy or VfioDeviceMigState.PreCopyP2p))
            {
                return ErrorReason.Fail(Errno.EINVAL, $"VFIO_MIG_GET_PRECOPY_INFO: device is in {state}, not a PRE_COPY state");
            }

            _lock.Lock();
            if (_disabled)
            {
                _lock.Unlock();
                return Errno.ENODEV.Negative();
            }

            if (pos > _filled)
            {
                _lock.Unlock();
                return Errno.EINVAL.Negative();
            }

            var outInfo = new VfioPrecopyInfo { Argsz = info.Argsz, Flags = info.Flags, InitialBytes = (ulong)(_filled - pos), DirtyBytes = 0 };
            _lock.Unlock();
            return VfioArg.CopyOut(arg, outInfo, VfioPrecopyInfo.MinSz);
        });
    }

    private long ResumeWrite(ulong buf, long len, ref long pos)
    {
        if (pos < 0 || pos + len < pos)
        {
            return Errno.EINVAL.Negative();
        }

        if (pos + len > _dev.DataSize)
        {
            return ErrorReason.Fail(Errno.ENOMEM, $"write: the resume stream would be {pos + len} bytes, mtty_data_size is {_dev.DataSize}");
        }

        _lock.Lock();
        try
        {
            if (_disabled)
            {
                return Errno.ENODEV.Negative();
            }

            if (UserMemory.CopyFromUser(_data.AsSpan((int)pos, (int)len), buf) != 0)
            {
                return Errno.EFAULT.Negative();
            }

            pos += len;
            long ret = len;
            if (_filled < MttyDevice.HeaderSize && _filled + len >= MttyDevice.HeaderSize && !_dev.HeaderValid(_data))
            {
                // The sample fails the write but keeps the bytes and counts them.
                ret = ErrorReason.Fail(Errno.EFAULT, "write: mtty resume header has the wrong magic, version, flags or port count");
            }

            _filled += (int)len;
            return ret;
        }
        finally
        {
            _lock.Unlock();
        }
    }

    private sealed class SaveFops : FileOperations
    {
        public static readonly SaveFops Instance = new();

        public override bool CanRead => true;

        public override long Read(SimFile file, ulong buf, long count, ref long pos) => ((MttyMigrationFile)file.PrivateData!).SaveRead(buf, count, ref pos);

        public override long Ioctl(SimFile file, uint cmd, ulong arg) => ((MttyMigrationFile)file.PrivateData!).PrecopyIoctl(cmd, arg, file.Position);

        public override void Release(SimFile file) => ((MttyMigrationFile)file.PrivateData!).Disable();
    }

    private sealed class ResumeFops : FileOperations
    {
        public static readonly ResumeFops Instance = new();

        public override bool CanWrite => true;

        public override long Write(SimFile file, ulong buf, long count, ref long pos) => ((MttyMigrationFile)file.PrivateData!).ResumeWrite(buf, count, ref pos);

        public override void Release(SimFile file) => ((MttyMigrationFile)file.PrivateData!).Disable();
    }
}
