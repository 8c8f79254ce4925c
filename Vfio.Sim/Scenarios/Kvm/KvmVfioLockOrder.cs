// Race 7 of docs/races.md: the KVM ↔ VFIO lock orders (virt/kvm/vfio.c and
// drivers/vfio/group.c, v6.12; the v6.2-cycle orders as VfioDesign.KvmLocking variants).
// edu is bound to a scenario-private vfio driver shaped like vfio-ap: its open_device takes
// kvm->lock and a VM reference of its own, its close_device takes kvm->lock and drops that
// reference last. The user adds the group to a VM's KVM-VFIO device, opens and closes the
// device once (so lockdep has seen the open's order), then one thread closes the KVM-VFIO
// device and the VM while another opens and closes the device twice.
//   KvmRefLock (the kernel since 2b48f52f2bff): group->kvm is under kvm_ref_lock and the core
//     holds the VM from first open to last close — no inversion, no deadlock, the VM is
//     destroyed once.
//   GroupLockAtKvmVfioRelease (51cdc8bc120e without 2b48f52f2bff): the KVM-VFIO release takes
//     the group lock under kvm->lock while the open holds the group lock and takes kvm->lock —
//     lockdep reports the cycle on every schedule, and some schedules deadlock.
//   GroupLockAtVmDestroy (before 51cdc8bc120e): the driver's close drops the VM's last
//     reference under the group lock, and the VM's destruction lets go of the group through
//     vfio_file_set_kvm, which takes the group lock again — recursive locking, a
//     self-deadlock, on schedules where the device is still open when the VM's fds close.

using System.Runtime.InteropServices;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Kvm;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;
using Vfio.Sim.Drivers;
using Vfio.Sim.Races;
using static Vfio.Sim.Scenarios.ScenarioContext;

namespace Vfio.Sim.Scenarios.Kvm;

/// <summary><c>kvm-vfio-lock-order</c>: closing a VM's KVM-VFIO device racing a vfio-ap-like driver's open and close.</summary>
internal sealed class KvmVfioLockOrder : Scenario
{
    private const string Edu = "0000:01:00.0";
    private const string DriverName = "vfio-kvm-lock";

    /// <inheritdoc/>
    public override string Name => "kvm-vfio-lock-order";

    /// <inheritdoc/>
    public override string Description =>
        "Race 7: one thread closes a VM's KVM-VFIO device and the VM while another opens and closes edu, bound to a driver that takes kvm->lock " +
        "in open_device (as vfio-ap does). The kernel's kvm_ref_lock order holds; VfioDesign.KvmLocking's v6.2-cycle orders give a lockdep " +
        "report and deadlocks.";

    /// <inheritdoc/>
    public override ScenarioKind Kind => ScenarioKind.Race;

    /// <inheritdoc/>
    public override RaceInfo Race { get; } = new()
    {
        Item = "7",
        Kernels = "v6.2–v6.3",
        FixCommits = "51cdc8bc120e \"kvm/vfio: Fix potential deadlock on vfio group_lock\", 2b48f52f2bff \"vfio: fix deadlock between group lock and kvm lock\"",
        FixSwitch = "VfioDesign.KvmLocking = GroupLockAtKvmVfioRelease (the order before 2b48f52f2bff; the one before 51cdc8bc120e is --design KvmLocking=GroupLockAtVmDestroy)",
        Detectors = [RaceDetector.Lockdep, RaceDetector.Deadlock],
    };

    /// <inheritdoc/>
    public override void Configure(VfioSimBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.AddType1()
            .AddKvm()
            .AddPciDriver(_ => new SampleVfioPciDriver(DriverName) { CustomOps = new KvmLockingOps() })
            .AddModule(sim =>
            {
                if (Unmet(sim) is null)
                {
                    sim.Bind(Edu, DriverName);
                }
            });
    }

    /// <inheritdoc/>
    public override void ApplyFix(VfioSimBuilder builder, bool on)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.UseDesign(d => d with { KvmLocking = on ? VfioKvmLocking.KvmRefLock : VfioKvmLocking.GroupLockAtKvmVfioRelease });
    }

    /// <inheritdoc/>
    public override string? Unmet(VfioSim sim)
    {
        ArgumentNullException.ThrowIfNull(sim);
        return sim.Machine.Pci.Find(Edu) is { IommuGroup: not null }
            ? null
            : $"the machine has no {Edu} in an IOMMU group: {Name} binds the default machine's edu";
    }

    /// <inheritdoc/>
    public override void Execute(ScenarioContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        VfioSim sim = context.Sim;
        SimProcess user = sim.Spawn("qemu");
        var container = new VfioContainerFd(user);
        var group = new VfioGroupFd(user, sim.GroupOf(Edu));
        group.SetContainer(container);
        container.SetIommu(VfioExtension.Type1v2);

        int kvm = user.Open("/dev/kvm");
        Check(kvm >= 0, "/dev/kvm opens", $"{kvm}");
        int vm = (int)user.Ioctl(kvm, KvmIoctl.CreateVm);
        user.Close(kvm);
        Check(vm >= 0, "KVM_CREATE_VM succeeds", $"{vm}");
        KvmVm v = PrivateData<KvmVm>(user, vm);
        var cd = new KvmCreateDevice { Type = (uint)KvmDeviceType.Vfio };
        long ret = user.Ioctl(vm, KvmIoctl.CreateDevice, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref cd, 1)));
        Check(ret == 0, "KVM_CREATE_DEVICE(KVM_DEV_TYPE_VFIO) succeeds", $"{ret}");
        int kvmVfio = (int)cd.Fd;
        ret = AddFile(user, kvmVfio, group.Fd);
        Check(ret == 0, "KVM_DEV_VFIO_FILE_ADD of the group succeeds", $"{ret}");

        // Once with the VM associated, so the open's lock order is on record.
        group.GetDeviceFd(Edu).Dispose();

        int delayMs = (int)(sim.Kernel.Random.NextU64() % 3);
        KTask closer = user.SpawnThread("close-kvm", () =>
        {
            KTask.Msleep(delayMs);
            user.Close(kvmVfio);
            user.Close(vm);
        });
        KTask opener = user.SpawnThread("open-device", () =>
        {
            for (int i = 0; i < 2; i++)
            {
                VfioDeviceFd d = group.GetDeviceFd(Edu);
                KTask.Msleep(1);
                d.Dispose();
                KTask.Msleep(1);
            }
        });
        closer.Join();
        opener.Join();

        VfioDevice vdev = ((SampleVfioPciDriver)sim.Machine.Pci.Find(Edu)!.Driver!).DeviceOf(sim.Device(Edu));
        Detect(RaceDetector.Leak, v.IsDestroyed, "the VM is destroyed once its fds and the device's references are gone", "it is still alive");
        Detect(RaceDetector.Leak, vdev.Kvm is null, "the closed device keeps no VM", $"it keeps {vdev.Kvm}");
        group.Dispose();
        container.Dispose();
    }

    private static long AddFile(SimProcess user, int kvmVfio, int fd)
    {
        long buf = user.Mmap(0, PhysMem.PageSize, Prot.PROT_READ | Prot.PROT_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        Check(buf > 0, "an anonymous page for the fd maps", $"{buf}");
        Check(user.Mm.WriteUser((ulong)buf, BitConverter.GetBytes(fd)) == 0, "the fd is written to user memory", "it is not");
        var attr = new KvmDeviceAttr { Group = KvmDevVfio.File, Attr = KvmDevVfio.FileAdd, Addr = (ulong)buf };
        return user.Ioctl(kvmVfio, KvmIoctl.SetDeviceAttr, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref attr, 1)));
    }

    private static T PrivateData<T>(SimProcess p, int fd)
        where T : class
    {
        SimFile f = p.Files.Get(fd) ?? throw new InvalidOperationException($"fd {fd} is not open");
        try
        {
            return f.PrivateData as T ?? throw new InvalidOperationException($"fd {fd} is not a {typeof(T).Name}");
        }
        finally
        {
            f.Put();
        }
    }

    // The shape of vfio-ap's open and close (vfio_ap_mdev_set_kvm / unset_kvm): the VM's lock
    // around the driver's own bookkeeping, and a VM reference of the driver's own from open
    // to close, dropped after the lock.
    private sealed class KvmLockingOps : VfioDeviceOps
    {
        public override string Name => DriverName;

        public override int OpenDevice(VfioDevice device)
        {
            if (device.Kvm is KvmVm vm)
            {
                vm.Lock.Lock();
                vm.Get();
                vm.Lock.Unlock();
            }

            return 0;
        }

        public override void CloseDevice(VfioDevice device)
        {
            if (device.Kvm is KvmVm vm)
            {
                vm.Lock.Lock();
                vm.Lock.Unlock();
                vm.Put();
            }
        }

        public override long Ioctl(VfioDevice device, uint cmd, ulong arg) => Errno.ENOTTY.Negative();
    }
}
