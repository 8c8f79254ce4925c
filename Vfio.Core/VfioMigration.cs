// Models the migration and DMA-logging parts of drivers/vfio/vfio_main.c (v6.12):
// struct vfio_migration_ops / vfio_log_ops as a driver offers them, vfio_mig_get_next_state()
// (the state machine's arcs, PRE_COPY included) and the VFIO_DEVICE_FEATURE handlers
// MIGRATION, MIG_DEVICE_STATE, MIG_DATA_SIZE and DMA_LOGGING_START/STOP/REPORT, in the
// kernel's check order. A driver opts in by making its ops implement IVfioMigrationOps
// (vdev->mig_ops) and, optionally, IVfioLogOps (vdev->log_ops); without them every one of
// these features is ENOTTY, as for a device whose mig_ops/log_ops are NULL.
//
// Lock rules: none of its own. The driver serialises its state changes (its state_mutex).

using System.Runtime.InteropServices;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;

namespace Vfio.Core;

/// <summary>struct vfio_migration_ops, plus vdev->migration_flags.</summary>
public interface IVfioMigrationOps
{
    /// <summary>vdev-&gt;migration_flags (VFIO_MIGRATION_*); 0 means the device does not migrate and the features are ENOTTY.</summary>
    ulong MigrationFlags(VfioDevice device);

    /// <summary>-&gt;migration_set_state(): 0 with an optional data file, or -errno.</summary>
    int MigrationSetState(VfioDevice device, VfioDeviceMigState newState, out SimFile? dataFile);

    /// <summary>-&gt;migration_get_state().</summary>
    int MigrationGetState(VfioDevice device, out VfioDeviceMigState state);

    /// <summary>-&gt;migration_get_data_size().</summary>
    int MigrationGetDataSize(VfioDevice device, out ulong stopCopyLength);
}

/// <summary>struct vfio_log_ops (device DMA dirty logging).</summary>
public interface IVfioLogOps
{
    /// <summary>vdev-&gt;log_ops is set (a driver may offer the interface and switch it off per profile).</summary>
    bool HasLogOps(VfioDevice device);

    /// <summary>-&gt;log_start(ranges, page_size): 0 or -errno; may change <paramref name="pageSize"/>.</summary>
    int LogStart(VfioDevice device, IReadOnlyList<(ulong Iova, ulong Length)> ranges, ref ulong pageSize);

    /// <summary>-&gt;log_stop().</summary>
    int LogStop(VfioDevice device);

    /// <summary>-&gt;log_read_and_clear() over [iova, iova+length).</summary>
    int LogReadAndClear(VfioDevice device, ulong iova, ulong length);
}

/// <summary>The core's migration state machine and feature handlers.</summary>
public static class VfioMigration
{
    private const string IoctlName = "VFIO_DEVICE_FEATURE";
    private const int NumStates = (int)VfioDeviceMigState.Nr;

    /// <summary>LOG_MAX_RANGES: the ranges of one DMA_LOGGING_START fit in a page.</summary>
    public const int LogMaxRanges = 4096 / 16;

    // vfio_from_fsm_table: [from][to] = the next step. ERROR rows lead to ERROR.
    private static readonly VfioDeviceMigState[,] s_next = BuildTable();

    // state_flags_table: the migration flags a state needs.
    private static readonly ulong[] s_stateFlags =
    [
        ulong.MaxValue, // ERROR
        VfioFeature.MigrationStopCopy, // STOP
        VfioFeature.MigrationStopCopy, // RUNNING
        VfioFeature.MigrationStopCopy, // STOP_COPY
        VfioFeature.MigrationStopCopy, // RESUMING
        VfioFeature.MigrationStopCopy | VfioFeature.MigrationP2p, // RUNNING_P2P
        VfioFeature.MigrationStopCopy | VfioFeature.MigrationPreCopy, // PRE_COPY
        VfioFeature.MigrationStopCopy | VfioFeature.MigrationP2p | VfioFeature.MigrationPreCopy, // PRE_COPY_P2P
    ];

    /// <summary>
    /// vfio_mig_get_next_state(): the next arc from <paramref name="cur"/> toward
    /// <paramref name="target"/> that the device's flags support; 0, or -EINVAL for a target
    /// the device cannot reach (unknown, unsupported, or only through ERROR).
    /// </summary>
    public static int GetNextState(ulong migrationFlags, VfioDeviceMigState cur, VfioDeviceMigState target, out VfioDeviceMigState next, SimKernel? kernel = null)
    {
        next = VfioDeviceMigState.Error;
        bool badCur = (uint)cur >= NumStates || (s_stateFlags[(int)cur] & migrationFlags) != s_stateFlags[(int)cur];
        if (kernel is not null ? Warn.On(kernel, badCur, $"vfio_mig_get_next_state: current state {cur} is not one the device supports") : badCur)
        {
            return Errno.EINVAL.Negative();
        }

        if ((uint)target >= NumStates || (s_stateFlags[(int)target] & migrationFlags) != s_stateFlags[(int)target])
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: migration state {(uint)target} is unknown or not supported by flags 0x{migrationFlags:x}");
        }

        next = s_next[(int)cur, (int)target];
        while ((s_stateFlags[(int)next] & migrationFlags) != s_stateFlags[(int)next])
        {
            next = s_next[(int)next, (int)target];
        }

        return next != VfioDeviceMigState.Error ? 0 : ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: no arc from {cur} to {target}");
    }

    /// <summary>The VFIO_DEVICE_FEATURE ids this file handles.</summary>
    internal static bool Handles(uint feature) => feature is VfioFeature.Migration or VfioFeature.MigDeviceState or VfioFeature.MigDataSize
        or VfioFeature.DmaLoggingStart or VfioFeature.DmaLoggingStop or VfioFeature.DmaLoggingReport;

    /// <summary>Dispatches one of the features <see cref="Handles"/> accepts.</summary>
    internal static long Feature(VfioDevice device, uint flags, ulong data, ulong dataSz)
    {
        IVfioMigrationOps? mig = device.Ops as IVfioMigrationOps;
        if (mig is not null && mig.MigrationFlags(device) == 0)
        {
            mig = null;
        }

        IVfioLogOps? log = device.Ops as IVfioLogOps;
        if (log is not null && !log.HasLogOps(device))
        {
            log = null;
        }

        return (flags & VfioFeature.Mask) switch
        {
            VfioFeature.Migration => Migration(device, mig, flags, data, dataSz),
            VfioFeature.MigDeviceState => MigDeviceState(device, mig, flags, data, dataSz),
            VfioFeature.MigDataSize => MigDataSize(device, mig, flags, data, dataSz),
            VfioFeature.DmaLoggingStart => LoggingStart(device, log, flags, data, dataSz),
            VfioFeature.DmaLoggingStop => LoggingStop(device, log, flags, dataSz),
            _ => LoggingReport(device, log, flags, data, dataSz),
        };
    }

    private static int NoMigration(VfioDevice device) => ErrorReason.Fail(Errno.ENOTTY, $"{IoctlName}: {device.Dev.Name} does not support migration");

    private static int NoLogging(VfioDevice device) => ErrorReason.Fail(Errno.ENOTTY, $"{IoctlName}: {device.Dev.Name} does not support DMA logging");

    private static long Migration(VfioDevice device, IVfioMigrationOps? mig, uint flags, ulong data, ulong dataSz)
    {
        if (mig is null)
        {
            return NoMigration(device);
        }

        int ret = VfioDeviceFeatures.Check(flags, dataSz, VfioFeature.Get, (ulong)Marshal.SizeOf<VfioDeviceFeatureMigration>());
        if (ret != 1)
        {
            return ret;
        }

        var m = new VfioDeviceFeatureMigration { Flags = mig.MigrationFlags(device) };
        return VfioArg.CopyOut(data, m, Marshal.SizeOf<VfioDeviceFeatureMigration>());
    }

    private static long MigDeviceState(VfioDevice device, IVfioMigrationOps? mig, uint flags, ulong data, ulong dataSz)
    {
        if (mig is null)
        {
            return NoMigration(device);
        }

        int size = Marshal.SizeOf<VfioDeviceFeatureMigState>();
        int ret = VfioDeviceFeatures.Check(flags, dataSz, VfioFeature.Get | VfioFeature.Set, (ulong)size);
        if (ret != 1)
        {
            return ret;
        }

        VfioDeviceFeatureMigState state = default;
        if (VfioArg.CopyInPrefix(data, size, ref state) != 0)
        {
            return ErrorReason.Fail(Errno.EFAULT, $"{IoctlName}: cannot read the migration state at 0x{data:x}");
        }

        SimFile? file = null;
        if ((flags & VfioFeature.Get) != 0)
        {
            ret = mig.MigrationGetState(device, out VfioDeviceMigState cur);
            if (ret != 0)
            {
                return ret;
            }

            state.DeviceState = cur;
        }
        else
        {
            ret = mig.MigrationSetState(device, state.DeviceState, out file);
            if (ret == 0 && file is not null)
            {
                return ReturnFd(file, data, state);
            }
        }

        state.DataFd = -1;
        if (VfioArg.CopyOut(data, state, size) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        return ret;
    }

    /// <summary>vfio_ioct_mig_return_fd(): installs the data file at a new fd and writes it back.</summary>
    private static long ReturnFd(SimFile file, ulong data, VfioDeviceFeatureMigState state)
    {
        SimProcess? p = SimProcess.Current;
        if (p is null)
        {
            file.Put();
            return Errno.EBADF.Negative();
        }

        int fd = p.GetUnusedFd(cloexec: true);
        if (fd < 0)
        {
            file.Put();
            return fd;
        }

        state.DataFd = fd;
        if (VfioArg.CopyOut(data, state, Marshal.SizeOf<VfioDeviceFeatureMigState>()) != 0)
        {
            p.PutUnusedFd(fd);
            file.Put();
            return Errno.EFAULT.Negative();
        }

        p.FdInstall(fd, file);
        return 0;
    }

    private static long MigDataSize(VfioDevice device, IVfioMigrationOps? mig, uint flags, ulong data, ulong dataSz)
    {
        if (mig is null)
        {
            return NoMigration(device);
        }

        int size = Marshal.SizeOf<VfioDeviceFeatureMigDataSize>();
        int ret = VfioDeviceFeatures.Check(flags, dataSz, VfioFeature.Get, (ulong)size);
        if (ret != 1)
        {
            return ret;
        }

        ret = mig.MigrationGetDataSize(device, out ulong length);
        if (ret != 0)
        {
            return ret;
        }

        return VfioArg.CopyOut(data, new VfioDeviceFeatureMigDataSize { StopCopyLength = length }, size);
    }

    private static long LoggingStart(VfioDevice device, IVfioLogOps? log, uint flags, ulong data, ulong dataSz)
    {
        if (log is null)
        {
            return NoLogging(device);
        }

        int size = Marshal.SizeOf<VfioDeviceFeatureDmaLoggingControl>();
        int ret = VfioDeviceFeatures.Check(flags, dataSz, VfioFeature.Set, (ulong)size);
        if (ret != 1)
        {
            return ret;
        }

        VfioDeviceFeatureDmaLoggingControl control = default;
        if (VfioArg.CopyInPrefix(data, size, ref control) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        if (control.NumRanges == 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: DMA_LOGGING_START with no ranges");
        }

        if (control.NumRanges > LogMaxRanges)
        {
            return ErrorReason.Fail(Errno.E2BIG, $"{IoctlName}: {control.NumRanges} ranges, at most {LogMaxRanges}");
        }

        var ranges = new List<(ulong Iova, ulong Length)>((int)control.NumRanges);
        for (uint i = 0; i < control.NumRanges; i++)
        {
            VfioDeviceFeatureDmaLoggingRange r = default;
            if (VfioArg.CopyInPrefix(control.Ranges + (i * 16), 16, ref r) != 0)
            {
                return Errno.EFAULT.Negative();
            }

            // IS_ALIGNED with a page size that is not a power of two is the kernel's mask test.
            ulong mask = control.PageSize - 1;
            if ((r.Iova & mask) != 0 || (r.Length & mask) != 0)
            {
                return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: range [0x{r.Iova:x}, +0x{r.Length:x}) is not aligned to page size 0x{control.PageSize:x}");
            }

            if (r.Iova + r.Length < r.Iova)
            {
                return ErrorReason.Fail(Errno.EOVERFLOW, $"{IoctlName}: range 0x{r.Iova:x} + 0x{r.Length:x} overflows");
            }

            ulong last = r.Iova + r.Length - 1;
            foreach ((ulong iova, ulong length) in ranges)
            {
                if (r.Iova <= iova + length - 1 && iova <= last)
                {
                    return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: range [0x{r.Iova:x}, +0x{r.Length:x}) overlaps another");
                }
            }

            ranges.Add((r.Iova, r.Length));
        }

        ulong pageSize = control.PageSize;
        ret = log.LogStart(device, ranges, ref pageSize);
        if (ret != 0)
        {
            return ret;
        }

        control.PageSize = pageSize;
        if (VfioArg.CopyOut(data, control, size) != 0)
        {
            log.LogStop(device);
            return Errno.EFAULT.Negative();
        }

        return 0;
    }

    private static long LoggingStop(VfioDevice device, IVfioLogOps? log, uint flags, ulong dataSz)
    {
        if (log is null)
        {
            return NoLogging(device);
        }

        int ret = VfioDeviceFeatures.Check(flags, dataSz, VfioFeature.Set, 0);
        return ret != 1 ? ret : log.LogStop(device);
    }

    private static long LoggingReport(VfioDevice device, IVfioLogOps? log, uint flags, ulong data, ulong dataSz)
    {
        if (log is null)
        {
            return NoLogging(device);
        }

        int size = Marshal.SizeOf<VfioDeviceFeatureDmaLoggingReport>();
        int ret = VfioDeviceFeatures.Check(flags, dataSz, VfioFeature.Get, (ulong)size);
        if (ret != 1)
        {
            return ret;
        }

        VfioDeviceFeatureDmaLoggingReport report = default;
        if (VfioArg.CopyInPrefix(data, size, ref report) != 0)
        {
            return Errno.EFAULT.Negative();
        }

        if (report.PageSize < 4096 || (report.PageSize & (report.PageSize - 1)) != 0)
        {
            return ErrorReason.Fail(Errno.EINVAL, $"{IoctlName}: report page size 0x{report.PageSize:x} is not a power of two of at least 4 KiB");
        }

        if (report.Iova + report.Length < report.Iova)
        {
            return ErrorReason.Fail(Errno.EOVERFLOW, $"{IoctlName}: report range overflows");
        }

        return log.LogReadAndClear(device, report.Iova, report.Length);
    }

    private static VfioDeviceMigState[,] BuildTable()
    {
        const VfioDeviceMigState E = VfioDeviceMigState.Error, S = VfioDeviceMigState.Stop, R = VfioDeviceMigState.Running,
            SC = VfioDeviceMigState.StopCopy, RS = VfioDeviceMigState.Resuming, RP = VfioDeviceMigState.RunningP2p,
            PC = VfioDeviceMigState.PreCopy, PP = VfioDeviceMigState.PreCopyP2p;

        // Columns: ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P.
        return new VfioDeviceMigState[NumStates, NumStates]
        {
            { E, E, E, E, E, E, E, E },           // from ERROR
            { E, S, RP, SC, RS, RP, RP, RP },     // from STOP
            { E, RP, R, RP, RP, RP, PC, RP },     // from RUNNING
            { E, S, S, SC, S, S, E, E },          // from STOP_COPY
            { E, S, S, S, RS, S, S, S },          // from RESUMING
            { E, S, R, S, S, RP, R, PP },         // from RUNNING_P2P
            { E, R, R, PP, R, R, PC, PP },        // from PRE_COPY
            { E, RP, RP, SC, RP, RP, PC, PP },    // from PRE_COPY_P2P
        };
    }
}
