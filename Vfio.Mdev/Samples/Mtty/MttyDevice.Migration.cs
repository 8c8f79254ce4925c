// Models the migration of samples/vfio-mdev/mtty.c (v6.12, MttyFeatures.MigrationSupport): the
// state machine driven through vfio_mig_get_next_state(), the saving file (PRE_COPY gives
// the 24-byte header, STOP_COPY appends the ports), the resuming file (header checked once
// it is complete: EFAULT; a write past the expected size: ENOMEM; a short stream at
// RESUMING → STOP: EINVAL), the deferred reset, and the no-op DMA logging ops.
//
// Lock order: state_mutex → reset_mutex; a file's lock under state_mutex.

using System.Buffers.Binary;
using Vfio.Core;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;

namespace Vfio.Mdev.Samples.Mtty;

internal sealed partial class MttyDevice
{
    /// <summary>MTTY_MAGIC.</summary>
    public const ulong Magic = 0x7e9d09898c3e2c4e;

    /// <summary>offsetof(struct mtty_data, ports).</summary>
    public const int HeaderSize = 24;

    // Protects _state and the two files (state_mutex).
    private readonly KMutex _stateMutex;

    // Protects _deferredReset (reset_mutex).
    private readonly KMutex _resetMutex;

    private VfioDeviceMigState _state = VfioDeviceMigState.Running;
    private bool _deferredReset;
    private MttyMigrationFile? _saving;
    private MttyMigrationFile? _resuming;

    /// <summary>mtty_data_size().</summary>
    public int DataSize => HeaderSize + (NrPorts * MttyPort.StreamSize);

    /// <summary>The migration state, for tests.</summary>
    internal VfioDeviceMigState MigrationState => _state;

    /// <summary>mtty_set_state().</summary>
    public int SetState(VfioDeviceMigState target, out SimFile? file)
    {
        file = null;
        int ret = 0;
        _stateMutex.Lock();
        while (_state != target)
        {
            ret = VfioMigration.GetNextState(Ops.MigrationFlags(null!), _state, target, out VfioDeviceMigState next, Kernel);
            if (ret != 0)
            {
                break;
            }

            ret = StepStateLocked(next, out file);
            if (ret != 0)
            {
                break;
            }

            _state = next;
            if (Warn.On(Kernel, file is not null && next != target, $"mtty: a data file at intermediate state {next}"))
            {
                file!.Put();
                file = null;
                ret = Errno.EINVAL.Negative();
                break;
            }
        }

        StateMutexUnlock();
        return ret;
    }

    /// <summary>mtty_get_state().</summary>
    public VfioDeviceMigState GetState()
    {
        _stateMutex.Lock();
        VfioDeviceMigState s = _state;
        StateMutexUnlock();
        return s;
    }

    /// <summary>mtty_reset(): defer the reset to whoever holds state_mutex, or do it now.</summary>
    private int Reset()
    {
        _resetMutex.Lock();
        _deferredReset = true;
        if (!_stateMutex.TryLock())
        {
            _resetMutex.Unlock();
            return 0;
        }

        _resetMutex.Unlock();
        StateMutexUnlock();
        return 0;
    }

    /// <summary>mtty_state_mutex_unlock(): runs a deferred reset before letting state_mutex go.</summary>
    private void StateMutexUnlock()
    {
        _stateMutex.AssertHeld();
        while (true)
        {
            _resetMutex.Lock();
            if (!_deferredReset)
            {
                break;
            }

            _deferredReset = false;
            _resetMutex.Unlock();
            _state = VfioDeviceMigState.Running;
            DisableFilesLocked();
        }

        _stateMutex.Unlock();
        _resetMutex.Unlock();
    }

    private void DisableFiles()
    {
        _stateMutex.Lock();
        DisableFilesLocked();
        _stateMutex.Unlock();
    }

    /// <summary>mtty_disable_files().</summary>
    private void DisableFilesLocked()
    {
        _stateMutex.AssertHeld();
        if (_saving is { } s)
        {
            s.Disable();
            s.File.Put();
            _saving = null;
        }

        if (_resuming is { } r)
        {
            r.Disable();
            r.File.Put();
            _resuming = null;
        }
    }

    /// <summary>mtty_step_state(): one arc; a file (with a reference for the caller) on the arcs that make one.</summary>
    private int StepStateLocked(VfioDeviceMigState next, out SimFile? file)
    {
        _stateMutex.AssertHeld();
        file = null;
        VfioDeviceMigState cur = _state;
        const VfioDeviceMigState S = VfioDeviceMigState.Stop, R = VfioDeviceMigState.Running, SC = VfioDeviceMigState.StopCopy,
            RS = VfioDeviceMigState.Resuming, RP = VfioDeviceMigState.RunningP2p, PC = VfioDeviceMigState.PreCopy, PP = VfioDeviceMigState.PreCopyP2p;

        // mtty does no DMA: the P2P arcs and STOP ↔ RUNNING_P2P change nothing.
        if ((cur == R && next == RP) || (cur == RP && (next == R || next == S)) || (cur == PC && next == PP) || (cur == PP && next == PC) || (cur == S && next == RP))
        {
            return 0;
        }

        if (cur == RS && next == S)
        {
            int ret = LoadStateLocked();
            if (ret != 0)
            {
                return ret;
            }

            DisableFilesLocked();
            return 0;
        }

        if ((cur == PC && next == R) || (cur == PP && next == RP) || (cur == SC && next == S))
        {
            DisableFilesLocked();
            return 0;
        }

        if ((cur == R && next == PC) || (cur == RP && next == PP) || (cur == S && next == SC) || (cur == PP && next == SC))
        {
            bool created = false;
            if (_saving is null)
            {
                _saving = new MttyMigrationFile(this, saving: true);
                _saving.Fill(SaveHeader());
                created = true;
            }

            if (next == SC)
            {
                SavePortsLocked();
            }

            if (created)
            {
                _saving.File.Get();
                file = _saving.File;
            }

            return 0;
        }

        if (cur == S && next == RS)
        {
            _resuming = new MttyMigrationFile(this, saving: false);
            _resuming.File.Get();
            file = _resuming.File;
            return 0;
        }

        Warn.On(Kernel, true, $"mtty_step_state: no arc {cur} -> {next}");
        return Errno.EINVAL.Negative();
    }

    private byte[] SaveHeader()
    {
        var h = new byte[HeaderSize];
        BinaryPrimitives.WriteUInt64LittleEndian(h, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(12), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(16), (uint)NrPorts);
        return h;
    }

    /// <summary>mtty_save_state(): the ports' bytes after the header.</summary>
    private void SavePortsLocked()
    {
        _stateMutex.AssertHeld();
        var b = new byte[NrPorts * MttyPort.StreamSize];

        // The kernel copies the ports under the migration lock alone: only the user's own
        // accesses change them, and a VMM makes none while stopped. A cable's far end can,
        // so the copy also holds ops_lock and rxtx_lock (state_mutex → ops_lock → rxtx_lock).
        _opsLock.Lock();
        _rxtxLock.Lock();
        for (int i = 0; i < NrPorts; i++)
        {
            _ports[i].Save(b.AsSpan(i * MttyPort.StreamSize));
        }

        _rxtxLock.Unlock();
        _opsLock.Unlock();

        _saving!.Fill(b);
    }

    /// <summary>mtty_load_state(): EINVAL unless the whole stream arrived.</summary>
    private int LoadStateLocked()
    {
        _stateMutex.AssertHeld();
        MttyMigrationFile migf = _resuming!;
        byte[]? data = migf.Snapshot(DataSize);
        if (data is null)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"mtty: resume stream has {migf.FilledSize} bytes, {DataSize} expected");
        }

        _opsLock.Lock();
        _rxtxLock.Lock();
        for (int i = 0; i < NrPorts; i++)
        {
            _ports[i].Load(data.AsSpan(HeaderSize + (i * MttyPort.StreamSize)));
        }

        _rxtxLock.Unlock();
        _opsLock.Unlock();

        return 0;
    }

    /// <summary>The resume write's header check once the header is complete.</summary>
    internal bool HeaderValid(ReadOnlySpan<byte> h)
        => BinaryPrimitives.ReadUInt64LittleEndian(h) == Magic
           && BinaryPrimitives.ReadUInt32LittleEndian(h[20..]) == 0
           && BinaryPrimitives.ReadUInt32LittleEndian(h[8..]) == 1
           && BinaryPrimitives.ReadUInt32LittleEndian(h[12..]) == 0
           && BinaryPrimitives.ReadUInt32LittleEndian(h[16..]) == (uint)NrPorts;

    /// <summary>True while state is PRE_COPY or PRE_COPY_P2P (for the precopy ioctl, under state_mutex).</summary>
    internal int WithStateMutex(Func<VfioDeviceMigState, int> body)
    {
        _stateMutex.Lock();
        int r = body(_state);
        StateMutexUnlock();
        return r;
    }
}
