// Tests Vfio.Pci/VfioPciCoreDevice.HotReset.cs: VFIO_DEVICE_GET_PCI_HOT_RESET_INFO for a
// group-opened device on both profiles — argsz, a function no slot or bus reset can reach
// (ENODEV), the list of every function below the bus, ENOSPC with the count, EPERM for an
// affected function without an IOMMU group — with the caller's bytes checked after each
// call (the reset itself: VfioPciHotResetTests). On the real 6.1 and
// 6.12.118 (QEMU guest, devices on the root bus) argsz 11 is EINVAL and argsz 76 ENODEV
// with nothing written, as here.

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Iommu;
using Vfio.Platform.Machine;
using Vfio.Platform.Pci;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciHotResetInfoTests
{
    private const string F0 = "0000:01:00.0";
    private const string F1 = "0000:01:00.1";
    private const string RootBusFunction = "0000:00:02.0";
    private const byte Sentinel = 0xAA;

    // A root port with a two-function device behind it (one group, bus resets allowed) and an
    // endpoint on the root bus, which neither a slot nor a bus reset can reach.
    private const string MachineJson = """
        {"memory":{"ram":"1G"},"pci":[
          {"slot":1,"type":"root-port","acs":true,"children":[
            {"slot":0,"function":0,"type":"generic","vendor":"0x8086","device":"0x1521","class":"0x020000","multifunction":true,"bars":[{"index":0,"size":"64K"}]},
            {"slot":0,"function":1,"type":"generic","vendor":"0x8086","device":"0x1521","class":"0x020000","multifunction":true,"bars":[{"index":0,"size":"64K"}]}]},
          {"slot":2,"type":"generic","vendor":"0x1b36","device":"0x0001","class":"0x00ff00","bars":[{"index":0,"size":"4K"}]}]}
        """;

    public static IEnumerable<string> Profiles => ["linux-6.12", "linux-6.1"];

    [TestCaseSource(nameof(Profiles))]
    public void RS_04_OnAFunctionOfTheRootBus_IsEnodev_AndWritesNothing(string profile)
    {
        Run(profile, (rig, _) =>
        {
            int d = Open(rig, RootBusFunction);
            byte[] buf = Request(12 + 64, 12 + 64);
            byte[] before = [.. buf];
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceGetPciHotResetInfo, buf), Is.EqualTo(Errno.ENODEV.Negative()), ErrorReason.Current);
            Assert.That(buf, Is.EqualTo(before));
            Assert.That(ErrorReason.Current, Does.Contain("root bus"));
        });
    }

    [TestCaseSource(nameof(Profiles))]
    public void BI_05_RS_05_ArgszBelowTwelve_IsEinval_BeforeTheResetIsProbed(string profile)
    {
        Run(profile, (rig, _) =>
        {
            int root = Open(rig, RootBusFunction);
            int d = Open(rig, F0, F1);
            foreach (int fd in new[] { root, d })
            {
                byte[] buf = Request(64, 11);
                byte[] before = [.. buf];
                Assert.That(rig.P.Ioctl(fd, VfioIoctl.DeviceGetPciHotResetInfo, buf), Is.EqualTo(Errno.EINVAL.Negative()));
                Assert.That(buf, Is.EqualTo(before));
            }
        });
    }

    [TestCaseSource(nameof(Profiles))]
    public void RS_05_WithRoomForEveryone_ListsEveryFunctionBelowTheBus_WithItsGroupAndAddress(string profile)
    {
        Run(profile, (rig, _) =>
        {
            int d = Open(rig, F0, F1);
            int group = rig.GroupId(F0);
            Assert.That(rig.GroupId(F1), Is.EqualTo(group), "multifunction without ACS: one group");
            byte[] buf = Request(12 + (3 * 8), 12 + (3 * 8));
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceGetPciHotResetInfo, buf), Is.Zero, ErrorReason.Current);
            Assert.Multiple(() =>
            {
                Assert.That(U32(buf, 0), Is.EqualTo(36u), "argsz is left alone");
                Assert.That(U32(buf, 4), Is.Zero, "flags: no DEV_ID for a group-opened device");
                Assert.That(U32(buf, 8), Is.EqualTo(2u), "both functions of bus 1");
                for (int i = 0; i < 2; i++)
                {
                    int at = 12 + (8 * i);
                    Assert.That(U32(buf, at), Is.EqualTo((uint)group), $"entry {i}: group_id");
                    Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(buf.AsSpan(at + 4)), Is.Zero, $"entry {i}: segment");
                    Assert.That(buf[at + 6], Is.EqualTo(1), $"entry {i}: bus");
                    Assert.That(buf[at + 7], Is.EqualTo(i), $"entry {i}: devfn 00.{i}");
                }

                Assert.That(buf.AsSpan(12 + 16).ToArray(), Has.All.EqualTo(Sentinel), "the unused third slot is not written");
            });
        });
    }

    [Test]
    public void RS_OnTheDefaultMachine_EduIsAloneBelowItsRootPort()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (_, _, int d) = rig.Open(VfioPciRig.Edu);
            byte[] buf = Request(12 + 8, 12 + 8);
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceGetPciHotResetInfo, buf), Is.Zero, ErrorReason.Current);
            Assert.That((U32(buf, 8), U32(buf, 12), buf[18], buf[19]), Is.EqualTo((1u, (uint)rig.GroupId(VfioPciRig.Edu), (byte)1, (byte)0)));
        });
    }

    [TestCaseSource(nameof(Profiles))]
    public void RS_04_RS_05_OnTheDefaultMachinesDualPortNic_TwoFunctionsInTwoGroupsShareTheReset(string profile)
    {
        VfioSim sim = VfioPciRig.Builder(SchedulerMode.Real).UseProfile(KernelProfile.Parse(profile)).AddVfioPci().Build();
        var rig = new VfioPciRig(sim);
        Runs.AssertPassed(sim.Run(() =>
        {
            // Found by id: the ports' group ids depend on what the machine has before them.
            string[] ports = [.. rig.M.Pci.Devices.OfType<PciDevice>().Where(p => p.Identity is { Vendor: 0x8086, Device: 0x10fb }).Select(p => p.Name).Order(StringComparer.Ordinal)];
            Assert.That(ports, Has.Length.EqualTo(2));
            int d = Open(rig, ports[1]);
            byte[] probe = Request(12, 12);
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceGetPciHotResetInfo, probe), Is.EqualTo(Errno.ENOSPC.Negative()), "RS-04: argsz 12");
            Assert.That(U32(probe, 8), Is.EqualTo(2u), "both ports are affected");

            byte[] buf = Request(12 + 16, 12 + 16);
            Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceGetPciHotResetInfo, buf), Is.Zero, ErrorReason.Current);
            PciDevice port0 = rig.Dev(ports[0]);
            Assert.Multiple(() =>
            {
                Assert.That(U32(buf, 4), Is.Zero, "no DEV_ID flags: the device was opened through its group");
                Assert.That(U32(buf, 8), Is.EqualTo(2u));
                Assert.That((U32(buf, 12), buf[18], buf[19]), Is.EqualTo(((uint)port0.IommuGroup!.Id, (byte)port0.BusNumber, (byte)0)), "RS-05: port 0, in a group this device is not in");
                Assert.That((U32(buf, 20), buf[26], buf[27]), Is.EqualTo(((uint)rig.GroupId(ports[1]), (byte)port0.BusNumber, (byte)1)), "RS-05: port 1");
                Assert.That(U32(buf, 12), Is.Not.EqualTo(U32(buf, 20)), "two groups: a hot reset needs both group fds");
            });
        }));
    }

    [TestCaseSource(nameof(Profiles))]
    public void RS_04_WithoutRoom_IsEnospc_WithTheCountNeeded_AndOnlyTheHeaderWritten(string profile)
    {
        Run(profile, (rig, _) =>
        {
            int d = Open(rig, F0, F1);
            foreach (int argsz in new[] { 12, 12 + 8, 12 + 15 })
            {
                byte[] buf = Request(64, argsz);
                BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(4), 0xdead);   // flags in: cleared on the way out
                Assert.That(rig.P.Ioctl(d, VfioIoctl.DeviceGetPciHotResetInfo, buf), Is.EqualTo(Errno.ENOSPC.Negative()), $"argsz {argsz}");
                Assert.Multiple(() =>
                {
                    Assert.That(U32(buf, 0), Is.EqualTo((uint)argsz), $"argsz {argsz}");
                    Assert.That(U32(buf, 4), Is.Zero, $"argsz {argsz}: flags");
                    Assert.That(U32(buf, 8), Is.EqualTo(2u), $"argsz {argsz}: the count needed");
                    Assert.That(buf.AsSpan(12).ToArray(), Has.All.EqualTo(Sentinel), $"argsz {argsz}: no entry is written, not even the ones that fit");
                });
            }
        });
    }

    [TestCaseSource(nameof(Profiles))]
    public void RS_AnAffectedFunctionWithoutAnIommuGroup_IsEperm_AndOnlyLinux61WritesTheHeaderBack(string profile)
    {
        Run(profile, (rig, kernel) =>
        {
            int d = Open(rig, F0, F1);
            var sibling = rig.Dev(F1);
            IommuGroup group = sibling.IommuGroup!;
            byte[] buf = Request(64, 64);
            BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(4), 0xdead);
            BinaryPrimitives.WriteUInt32LittleEndian(buf.AsSpan(8), 7);
            byte[] before = [.. buf];
            sibling.IommuGroup = null;
            long ret;
            try
            {
                ret = rig.P.Ioctl(d, VfioIoctl.DeviceGetPciHotResetInfo, buf);
            }
            finally
            {
                sibling.IommuGroup = group;
            }

            Assert.That(ret, Is.EqualTo(Errno.EPERM.Negative()), ErrorReason.Current);
            bool nothing = kernel.Has(VfioPciFeatures.HotResetInfoFailedFillWritesNothing);
            Assert.That(nothing, Is.EqualTo(kernel == KernelProfile.Linux6_12));
            byte[] expected = [.. before];
            if (!nothing)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(expected.AsSpan(4), 0);   // 6.1: flags cleared, count as passed
            }

            Assert.That(buf, Is.EqualTo(expected), "no entry is written; the header only on 6.1");
        });
    }

    private static void Run(string profile, Action<VfioPciRig, KernelProfile> body)
    {
        KernelProfile kernel = KernelProfile.Parse(profile);
        VfioSim sim = VfioPciRig.Builder(SchedulerMode.Real)
            .UseProfile(kernel)
            .UseMachine(MachineDescriptionReader.Parse(MachineJson))
            .AddVfioPci()
            .Build();
        var rig = new VfioPciRig(sim);
        Runs.AssertPassed(sim.Run(() => body(rig, kernel)));
    }

    // Binds every function of the group to vfio-pci and opens the first; returns its device fd.
    private static int Open(VfioPciRig rig, string bdf, params string[] groupMates)
    {
        foreach (string mate in groupMates)
        {
            rig.BindToVfio(mate);
        }

        return rig.Open(bdf).Device;
    }

    // A request of argsz bytes in a buffer of length bytes: zeroes up to argsz, the sentinel after.
    private static byte[] Request(int length, int argsz)
    {
        byte[] buf = new byte[length];
        buf.AsSpan(Math.Min(argsz, length)).Fill(Sentinel);
        buf.AsSpan(12, Math.Max(0, Math.Min(argsz, length) - 12)).Fill(Sentinel);
        BinaryPrimitives.WriteUInt32LittleEndian(buf, (uint)argsz);
        return buf;
    }

    private static uint U32(byte[] b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(at));
}
