// PciPassthrough: what a VMM such as QEMU does with vfio-pci beyond BARs and interrupts.
//
// On the default machine it takes three pieces of hardware:
//   * the dual-port NIC behind root port 00:07.0 (0000:08:00.0 and 0000:08:00.1), two IOMMU
//     groups on one bus: neither port has a reset of its own, so the only reset is the bus
//     reset, VFIO_DEVICE_PCI_HOT_RESET, and the caller must prove it owns both groups;
//   * the same ports for an ioeventfd (a doorbell write without a trip through user space)
//     and for runtime power management (an unused function sits in D3hot; a VMM can put an
//     open one there too and be woken through an eventfd);
//   * the SR-IOV NIC behind 00:08.0 (PF 0000:09:00.0): VFs created through sriov_numvfs with
//     vfio-pci's enable_sriov, opened only with the PF's VF token.
// Every step checks what the kernel answers; the exit code is 0 only when all held.

using System.Buffers.Binary;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Fs;
using Vfio.Platform.Proc;
using Vfio.Sim;

const string Port0 = "0000:08:00.0", Port1 = "0000:08:00.1", Pf = "0000:09:00.0";
const string Token = "4bd3a1e0-8c1f-4a4e-9a55-3c2f6b1e7d10";
int failed = 0;

VfioSim sim = VfioSim.CreateBuilder().UseSeed(1).AddVfioPci(new VfioPciOptions { EnableSriov = true }).Build();
RunResult run = sim.Run(() =>
{
    SimProcess vmm = sim.Spawn("vmm");
    sim.Bind(Port0);
    sim.Bind(Port1);
    Check(sim.SysfsRead($"/sys/bus/pci/devices/{Port1}/power_state").Trim() == "D3hot", $"{Port1} is bound to vfio-pci and unused: runtime-suspended in D3hot");

    using (VfioSession p0 = sim.Open(vmm, Port0))
    using (VfioSession p1 = sim.Open(vmm, Port1))
    {
        // Hot reset: which functions it touches, and the proof of ownership.
        Check((p0.Device.GetInfo().Info.Flags & VfioDeviceFlags.Reset) == 0, "the ports have no function reset (GET_INFO without RESET)");
        IReadOnlyList<VfioPciDependentDevice> affected = p0.Device.GetPciHotResetInfo();
        Check(affected.Count == 2 && affected[0].GroupIdOrDevid != affected[1].GroupIdOrDevid,
            $"a hot reset of {Port0} touches {affected.Count} functions in groups {string.Join(", ", affected.Select(a => a.GroupIdOrDevid))}");
        Check(Errno(() => p0.Device.PciHotReset(p0.Group)) == Vfio.Kernel.Errno.EINVAL, "with only its own group fd: EINVAL");
        ushort command = p0.Device.ReadConfig16(0x04);
        p0.Device.WriteConfig16(0x04, (ushort)(command | 0x2));  // memory decode on
        p0.Device.WriteRegion32(VfioPciIndex.Bar0, 0x40, 0x55aa55aa);
        p0.Device.PciHotReset(p0.Group, p1.Group);
        uint after = p0.Device.ReadRegion32(VfioPciIndex.Bar0, 0x40);
        Check(after == 0, $"with both group fds the bus is reset: the register written before reads 0x{after:x} (config state restored, so BAR0 still decodes)");

        // An ioeventfd: each write to the eventfd stores 0x1234abcd at BAR0 + 0x40.
        int doorbell = vmm.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        p0.Device.SetIoeventfd(VfioPciIndex.Bar0, 0x40, 4, 0x1234abcd, doorbell);
        Span<byte> one = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(one, 1);
        vmm.Write(doorbell, one);
        Check(p0.Device.ReadRegion32(VfioPciIndex.Bar0, 0x40) == 0x1234abcd, "a write to the ioeventfd landed in BAR0 without an ioctl");
        Check(Errno(() => p0.Device.SetIoeventfd(VfioPciIndex.Bar0, 0x40, 4, 0x1234abcd, doorbell)) == Vfio.Kernel.Errno.EEXIST, "the same ioeventfd twice: EEXIST");
        p0.Device.SetIoeventfd(VfioPciIndex.Bar0, 0x40, 4, 0x1234abcd, -1);
        vmm.Close(doorbell);

        // Low power: an open device put in D3hot, woken by the next ioctl.
        int wake = vmm.Eventfd(0, EventFdContext.EFD_NONBLOCK);
        Check(p1.Device.ProbeFeature(VfioFeature.LowPowerEntryWithWakeup), "the low-power features are there (PROBE)");
        p1.Device.LowPowerEntryWithWakeup(wake);
        Check(sim.SysfsRead($"/sys/bus/pci/devices/{Port1}/power_state").Trim() == "D3hot", $"{Port1} entered low power while open");
        _ = p1.Device.GetInfo();
        Check(vmm.Read(wake, one) == 8 && BinaryPrimitives.ReadUInt64LittleEndian(one) == 1, "the next ioctl woke it and signalled the wake-up eventfd once");
        Check(sim.SysfsRead($"/sys/bus/pci/devices/{Port1}/power_state").Trim() == "D0", $"{Port1} is back in D0");
        vmm.Close(wake);
    }

    // SR-IOV: two VFs of the PF, captured by vfio-pci, opened with the PF's token.
    sim.Bind(Pf);
    using (VfioSession pf = sim.Open(vmm, $"{Pf} vf_token={Token}"))
    {
        sim.SysfsWrite($"/sys/bus/pci/devices/{Pf}/sriov_numvfs", "2");
        string vf = "0000:09:00.1";
        Check(sim.DriverOf(vf) == "vfio-pci", $"sriov_numvfs=2 created {vf} and vfio-pci captured it");
        Check(Errno(() => sim.Open(vmm, vf).Dispose()) == Vfio.Kernel.Errno.EACCES, "opening a VF without the token: EACCES");
        using (VfioSession v = sim.Open(vmm, $"{vf} vf_token={Token}"))
        {
            uint ids = v.Device.ReadConfig32(0);
            Check(ids == 0x10ca8086, $"the VF opens with the token; vfio shows its ids 0x{ids:x8} (its own registers read 0xffffffff)");
        }

        sim.SysfsWrite($"/sys/bus/pci/devices/{Pf}/sriov_numvfs", "0");
    }

    sim.Reprobe(Pf);
    sim.Reprobe(Port0);
    sim.Reprobe(Port1);
});

Check(run.Passed, $"the run completed: {run.Outcome}{(run.Passed ? "" : "\n" + run.Describe())}");
IReadOnlyList<string> broken = sim.CheckInvariants();
Check(broken.Count == 0, $"invariants hold{string.Concat(broken.Select(b => "\n    " + b))}");
Check(sim.UnexpectedWarnings.Count == 0, $"{sim.UnexpectedWarnings.Count} kernel warnings");
Console.WriteLine(failed == 0 ? "all checks passed" : $"{failed} checks failed");
return failed == 0 ? 0 : 1;

void Check(bool ok, string what)
{
    Console.WriteLine($"  {(ok ? "ok  " : "FAIL")} {what}");
    failed += ok ? 0 : 1;
}

// The errno a call failed with, or 0.
static Errno Errno(Action call)
{
    try
    {
        call();
        return 0;
    }
    catch (VfioException e)
    {
        return e.Errno;
    }
}
