// Takes the object graph: walks the live objects of every layer (processes and fd tables,
// struct file, vfio groups, containers and devices, type1 domains and mappings, IOMMU
// groups, PCI functions and mdevs, eventfds, KVM VMs) and records each once, with the
// count the kernel layer itself keeps (f_count, the container's kref, the group device's
// kref, the device's registration refcount and open_count, the iommu_group kobject).
//
// No kernel lock is taken: a capture neither schedules nor shows in lockdep, so graphing a
// run does not change it. It must therefore see the objects at rest: between runs, or in a
// step observer under the controlled scheduler (only the observing task runs, and it does
// not yield while it reads). Ids are the kernel's own numbers (pid, file id, group name,
// device name) and every list is sorted, so the same seed gives the same graph, byte for byte.

using System.Globalization;
using Vfio.Core;
using Vfio.Core.Kvm;
using Vfio.Iommu.Type1;
using Vfio.Mdev;
using Vfio.Pci;
using Vfio.Platform;
using Vfio.Platform.Base;
using Vfio.Platform.Fs;
using Vfio.Platform.Iommu;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using GraphProperties = System.Collections.Generic.OrderedDictionary<string, string>;

namespace Vfio.Sim.Graphs;

/// <summary>Walks a simulation's objects into nodes and edges (see the file header for when it may run).</summary>
internal sealed class ObjectGraphBuilder
{
    private readonly VfioSim _sim;
    private readonly Dictionary<string, (GraphNode Node, int Rank, string SortKey)> _nodes = new(StringComparer.Ordinal);
    private readonly List<GraphEdge> _edges = [];
    private readonly HashSet<(string, string, string)> _edgeSet = [];

    // Objects already walked, by reference (a group is reached from its file and from the core's list).
    private readonly HashSet<object> _seen = new(ReferenceEqualityComparer.Instance);

    internal ObjectGraphBuilder(VfioSim sim) => _sim = sim;

    internal ObjectGraph Build()
    {
        SimMachine m = _sim.Machine;
        foreach (SimProcess p in m.ProcessesUnlocked)
        {
            AddProcess(p);
        }

        if (_sim.VfioOrNull is { } core)
        {
            foreach (VfioGroup g in core.GroupsUnlocked)
            {
                AddGroup(g);
            }
        }

        if (m.Iommu is { } iommu)
        {
            foreach (IommuGroup ig in iommu.GroupsUnlocked)
            {
                AddIommuGroup(ig);
            }
        }

        if (m.SoftwareIommuField is { } software)
        {
            foreach (IommuGroup ig in software.GroupsUnlocked)
            {
                AddIommuGroup(ig);
            }
        }

        foreach (SimDevice d in m.Pci.DevicesUnlocked)
        {
            AddBusDevice(d);
        }

        if (m.GetModule<MdevCore>() is { } mdev)
        {
            foreach (SimDevice d in mdev.Bus.DevicesUnlocked)
            {
                AddBusDevice(d);
            }
        }

        return Finish();
    }

    private ObjectGraph Finish()
    {
        var ordered = new List<(GraphNode Node, int Rank, string SortKey)>(_nodes.Values);
        ordered.Sort(static (a, b) => a.Rank != b.Rank ? a.Rank.CompareTo(b.Rank) : string.CompareOrdinal(a.SortKey, b.SortKey));
        var nodes = new List<GraphNode>(ordered.Count);
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach ((GraphNode n, _, _) in ordered)
        {
            index[n.Id] = nodes.Count;
            nodes.Add(n);
        }

        var edges = new List<GraphEdge>(_edges.Count);
        foreach (GraphEdge e in _edges)
        {
            // An edge to an object the walk did not record (it cannot happen today) is left out
            // rather than drawn to nowhere.
            if (index.ContainsKey(e.From) && index.ContainsKey(e.To))
            {
                edges.Add(e);
            }
        }

        // By source node, then in the order the walk found them (a process's fds in fd order).
        var found = new Dictionary<GraphEdge, int>(edges.Count);
        for (int i = 0; i < edges.Count; i++)
        {
            found[edges[i]] = i;
        }

        edges.Sort((a, b) =>
        {
            int c = index[a.From].CompareTo(index[b.From]);
            return c != 0 ? c : found[a].CompareTo(found[b]);
        });
        return new ObjectGraph(nodes, edges);
    }

    // ---- Recording.

    private void Node(GraphNodeKind kind, string id, string sortKey, string label, long? refCount, string? owner, GraphProperties props)
        => _nodes[id] = (new GraphNode(id, kind, label, refCount, owner, props), (int)kind, sortKey);

    private void Edge(string from, string to, string label)
    {
        if (_edgeSet.Add((from, to, label)))
        {
            _edges.Add(new GraphEdge(from, to, label));
        }
    }

    private static string Dec(long v) => v.ToString(CultureInfo.InvariantCulture);

    private static string Hex(ulong v) => "0x" + v.ToString("x", CultureInfo.InvariantCulture);

    // Numbers sort as numbers within a kind.
    private static string Key(long v) => v.ToString("D12", CultureInfo.InvariantCulture);

    private static string Yes(bool b) => b ? "yes" : "no";

    internal static string ProcessName(SimProcess p) => $"{p.Comm}[{Dec(p.Pid)}]";

    // ---- Processes and files.

    private void AddProcess(SimProcess p)
    {
        if (!_seen.Add(p))
        {
            return;
        }

        string id = ProcessId(p);
        IReadOnlyList<(int Fd, SimFile File)> fds = p.Files.OpenUnlocked;
        var props = new GraphProperties
        {
            ["pid"] = Dec(p.Pid),
            ["comm"] = p.Comm,
            ["fds"] = Dec(fds.Count),
            ["locked_vm"] = Dec(p.Mm.LockedVm),
            ["pinned_vm"] = Dec(p.Mm.PinnedVm),
        };
        Node(GraphNodeKind.Process, id, Key(p.Pid), $"process {ProcessName(p)}", null, null, props);
        foreach ((int fd, SimFile f) in fds)
        {
            Edge(id, AddFile(f), "fd " + Dec(fd));
        }
    }

    private static string ProcessId(SimProcess p) => "process:" + Dec(p.Pid);

    private string AddFile(SimFile f)
    {
        string id = "file:" + Dec(f.Id);
        if (!_seen.Add(f))
        {
            return id;
        }

        string what = "other";
        var props = new GraphProperties();
        string? target = null;
        string targetLabel = "private_data";
        switch (f.Ops)
        {
            case VfioContainerFops when f.PrivateData is VfioContainer c:
                what = "container";
                target = AddContainer(c);
                break;
            case VfioGroupFops when f.PrivateData is VfioGroup g:
                what = "group";
                target = AddGroup(g);
                break;
            case VfioDeviceFops when f.PrivateData is VfioDeviceFile df:
                what = "device";
                target = AddDevice(df.Device);
                props["access"] = df.IsRevoked ? "revoked" : df.AccessGranted ? "granted" : "not yet granted";
                break;
            case EventFdOps when f.PrivateData is EventFdContext ctx:
                what = "eventfd";
                target = AddEventFd(ctx);
                targetLabel = "eventfd_ctx";
                break;
            case KvmVmFops when f.PrivateData is KvmVm vm:
                what = "kvm-vm";
                target = AddKvm(vm);
                break;
            case KvmDeviceFops when f.PrivateData is KvmDevice kd:
                what = "kvm-device";
                target = AddKvm(kd.Vm);
                targetLabel = "kvm";
                if (kd is KvmVfio kv)
                {
                    // KVM_DEV_VFIO_FILE_ADD: the device holds a reference on each file (or group).
                    foreach ((SimFile? held, VfioGroup? group) in kv.FilesUnlocked)
                    {
                        if (held is not null)
                        {
                            Edge(id, AddFile(held), "kvm-vfio file");
                        }
                        else if (group is not null)
                        {
                            Edge(id, AddGroup(group), "kvm-vfio group");
                        }
                    }
                }

                break;
            default:
                if (f.Path.StartsWith("/sys/", StringComparison.Ordinal))
                {
                    what = "sysfs";
                }

                break;
        }

        props["f_count"] = Dec(f.ReferenceCount);
        props["type"] = what;
        props["path"] = f.Path;
        props["mode"] = f.CanRead && f.CanWrite ? "rw" : f.CanWrite ? "w" : "r";
        if (f.IsReleased)
        {
            props["released"] = "yes";
        }

        Node(GraphNodeKind.File, id, Key(f.Id), $"file {Dec(f.Id)} {f.Path}", f.ReferenceCount, null, props);
        if (target is not null)
        {
            Edge(id, target, targetLabel);
        }

        return id;
    }

    // ---- vfio: containers, groups, devices.

    private string AddContainer(VfioContainer c)
    {
        string id = "container:" + Dec(c.Id);
        if (!_seen.Add(c))
        {
            return id;
        }

        IReadOnlyList<VfioGroup> groups = c.GroupsUnlocked;
        var props = new GraphProperties
        {
            ["refcount"] = Dec(c.ReferenceCountValue),
            ["groups"] = Dec(groups.Count),
            ["iommu_driver"] = c.IommuDriver?.Name ?? "none",
        };
        VfioIommu? type1 = c.IommuData as VfioIommu;
        if (type1 is not null)
        {
            props["iommu_type"] = type1.Nesting ? "VFIO_TYPE1_NESTING_IOMMU" : type1.V2 ? "VFIO_TYPE1v2_IOMMU" : "VFIO_TYPE1_IOMMU";
            props["dma_avail"] = Dec(type1.DmaAvailUnlocked);
        }

        if (c.NoIommu)
        {
            props["noiommu"] = "yes";
        }

        Node(GraphNodeKind.Container, id, Key(c.Id), $"container {Dec(c.Id)}", c.ReferenceCountValue, null, props);
        foreach (VfioGroup g in groups)
        {
            Edge(id, AddGroup(g), "group");
        }

        if (type1 is not null)
        {
            AddType1(id, c, type1);
        }

        return id;
    }

    private void AddType1(string containerId, VfioContainer c, VfioIommu iommu)
    {
        foreach ((IommuDomain domain, IReadOnlyList<IommuGroup> groups) in iommu.DomainsUnlocked)
        {
            string did = AddDomain(domain, containerId);
            Edge(containerId, did, "domain");
            foreach (IommuGroup ig in groups)
            {
                Edge(did, AddIommuGroup(ig), "attached group");
            }
        }

        foreach (IommuGroup ig in iommu.EmulatedGroupsUnlocked)
        {
            Edge(containerId, AddIommuGroup(ig), "emulated group");
        }

        foreach (VfioDma dma in iommu.DmasUnlocked)
        {
            string id = $"dma:{Dec(c.Id)}:{Hex(dma.Iova)}";
            ulong pages = dma.Size / PhysMem.PageSize;
            long pinned = dma.IommuMapped ? (long)pages : dma.PfnCount;
            string? owner = dma.Task is { } t ? ProcessName(t) : null;
            var props = new GraphProperties
            {
                ["iova"] = Hex(dma.Iova),
                ["size"] = Hex(dma.Size),
                ["vaddr"] = dma.VaddrInvalid ? "invalid" : Hex(dma.Vaddr),
                ["prot"] = ProtText(dma.Prot),
                ["pinned_pages"] = Dec(pinned),
                ["locked_vm"] = Dec(dma.LockedVm),
                ["iommu_mapped"] = Yes(dma.IommuMapped),
                ["task"] = owner ?? "none",
            };
            if (dma.Mm is { } mm)
            {
                props["mm"] = "mm " + Dec(mm.Id);
            }

            Node(GraphNodeKind.DmaMapping, id, Key(c.Id) + ":" + dma.Iova.ToString("x16", CultureInfo.InvariantCulture), $"dma {Hex(dma.Iova)}+{Hex(dma.Size)}", null, owner, props);
            Edge(containerId, id, "dma");
            if (dma.Task is { } task && _nodes.ContainsKey(ProcessId(task)))
            {
                Edge(id, ProcessId(task), "task");
            }
        }
    }

    private static string ProtText(IommuProt prot)
    {
        bool r = (prot & IommuProt.Read) != 0;
        bool w = (prot & IommuProt.Write) != 0;
        return r && w ? "rw" : r ? "r" : w ? "w" : "none";
    }

    private string AddGroup(VfioGroup g)
    {
        string id = "group:" + g.Name;
        if (!_seen.Add(g))
        {
            return id;
        }

        IommuGroup? ig = g.IommuGroupUnchecked;
        var props = new GraphProperties
        {
            ["refcount"] = Dec(g.ReferenceCountValue),
            ["drivers"] = Dec(g.Drivers),
            ["container_users"] = Dec(g.ContainerUsers),
            ["opened"] = Yes(g.OpenedFile is not null),
            ["viable"] = Yes(Viable(g, ig)),
            ["container"] = g.Container is { } c ? Dec(c.Id) : "none",
            ["type"] = g.Type switch
            {
                VfioGroupType.NoIommu => "noiommu",
                VfioGroupType.EmulatedIommu => "emulated",
                _ => "iommu",
            },
            ["node"] = g.HasNode ? g.DevPath : "removed",
        };
        Node(GraphNodeKind.VfioGroup, id, Key(g.Id) + g.Name, $"vfio group {g.Name}", g.ReferenceCountValue, g.OpenedFile is { } of ? FileOwner(of) : null, props);
        if (g.Container is { } container)
        {
            Edge(id, AddContainer(container), "container");
        }

        // The file may outlive its fds: an open device's use of the container holds it.
        if (g.OpenedFile is { } opened)
        {
            Edge(id, AddFile(opened), "opened_file");
        }

        if (ig is not null)
        {
            Edge(id, AddIommuGroup(ig), "iommu_group");
        }

        foreach (VfioDevice d in g.DevicesUnlocked)
        {
            Edge(id, AddDevice(d), "device");
        }

        if (g.Kvm is KvmVm vm)
        {
            Edge(id, AddKvm(vm), "kvm");
        }

        return id;
    }

    // The process whose fd holds the group's opened file (the first by pid, fd), or null.
    private string? FileOwner(SimFile file)
    {
        foreach (SimProcess p in _sim.Machine.ProcessesUnlocked)
        {
            foreach ((int _, SimFile f) in p.Files.OpenUnlocked)
            {
                if (ReferenceEquals(f, file))
                {
                    return ProcessName(p);
                }
            }
        }

        return null;
    }

    // What VFIO_GROUP_GET_STATUS reports as VIABLE, read without the group's lock: with DMA
    // ownership (v5.19+) a group is viable while it has a container or no kernel driver that
    // uses the DMA API holds a member; in the legacy model, while every member is unbound,
    // bound to a vfio driver or pci-stub, or a bridge.
    private static bool Viable(VfioGroup g, IommuGroup? ig)
    {
        if (ig is null)
        {
            return false;
        }

        bool legacy = g.Core.Design.Viability == VfioViabilityModel.LegacyNotifier;
        if (!legacy && (g.Container is not null || ig.OwnerCount == 0))
        {
            return true;
        }

        foreach (SimDevice dev in ig.DevicesUnlocked)
        {
            DeviceDriver? drv = dev.Driver;
            if (legacy
                ? drv is not null && !drv.DriverManagedDma && drv.Name != "pci-stub" && dev is not PciDevice { IsBridge: true }
                : drv is { DriverManagedDma: false })
            {
                return false;
            }
        }

        return legacy;
    }

    private string AddDevice(VfioDevice d)
    {
        string id = "device:" + d.Dev.Name;
        if (!_seen.Add(d))
        {
            return id;
        }

        var props = new GraphProperties
        {
            ["refcount"] = Dec(d.RegistrationCount),
            ["open_count"] = Dec(d.OpenCountUnlocked),
            ["kref"] = Dec(d.ReferenceCountValue),
            ["name"] = d.Name,
            ["driver"] = d.Dev.Driver?.Name ?? "none",
        };
        if (d.DevSet is { } set)
        {
            props["dev_set"] = Convert.ToString(set.SetId, CultureInfo.InvariantCulture) ?? "?";
            props["dev_set_devices"] = Dec(set.DeviceCountUnlocked);
        }

        if (d.IsReleased)
        {
            props["released"] = "yes";
        }

        Node(GraphNodeKind.Device, id, d.Dev.Name, $"vfio device {d.Name} ({d.Dev.Name})", d.RegistrationCount, null, props);
        Edge(id, AddBusDevice(d.Dev), "dev");
        if (d.Kvm is KvmVm vm)
        {
            Edge(id, AddKvm(vm), "kvm");
        }

        if (d is VfioPciCoreDevice pci)
        {
            AddTriggers(id, pci);
        }

        return id;
    }

    // The eventfds vfio-pci signals for the device: INTx, each MSI/MSI-X vector, ERR, REQ.
    private void AddTriggers(string deviceId, VfioPciCoreDevice pci)
    {
        if (pci.IntxTrigger is { } intx)
        {
            Edge(deviceId, AddEventFd(intx), "intx trigger");
        }

        int slots = pci.MsiVectorSlots;
        for (int v = 0; v < slots; v++)
        {
            if (pci.MsiTrigger(v) is { } t)
            {
                Edge(deviceId, AddEventFd(t), $"msi[{Dec(v)}] trigger");
            }
        }

        if (pci.ErrTrigger is { } err)
        {
            Edge(deviceId, AddEventFd(err), "err trigger");
        }

        if (pci.ReqTrigger is { } req)
        {
            Edge(deviceId, AddEventFd(req), "req trigger");
        }
    }

    // ---- IOMMU and bus.

    private string AddIommuGroup(IommuGroup ig)
    {
        string id = (ig.IsSoftware ? "iommu_group:sw" : "iommu_group:") + Dec(ig.Id);
        if (!_seen.Add(ig))
        {
            return id;
        }

        IReadOnlyList<SimDevice> members = ig.DevicesUnlocked;
        var props = new GraphProperties
        {
            ["refcount"] = Dec(ig.ReferenceCount),
            ["members"] = Dec(members.Count),
            ["owner_cnt"] = Dec(ig.OwnerCount),
        };
        if (ig.Owner is { } o)
        {
            // A user that took the whole group (vfio); kernel drivers count in owner_cnt without an owner.
            props["owner"] = o is VfioGroup g ? "vfio group " + g.Name : Convert.ToString(o, CultureInfo.InvariantCulture) ?? "?";
        }

        if (ig.Domain is { } dom)
        {
            props["domain"] = $"{Dec(dom.Id)} ({dom.Type.SysfsName()})";
        }

        if (ig.IsSoftware)
        {
            props["software"] = "yes";
        }

        Node(GraphNodeKind.IommuGroup, id, (ig.IsSoftware ? "1" : "0") + Key(ig.Id), $"iommu_group {(ig.IsSoftware ? "sw " : "")}{Dec(ig.Id)}", ig.ReferenceCount, null, props);
        foreach (SimDevice d in members)
        {
            Edge(id, AddBusDevice(d), "member");
        }

        return id;
    }

    private string AddDomain(IommuDomain domain, string owner)
    {
        string id = "domain:" + Dec(domain.Id);
        if (!_seen.Add(domain))
        {
            return id;
        }

        var props = new GraphProperties
        {
            ["type"] = domain.Type.SysfsName(),
            ["enforce_cache_coherency"] = Yes(domain.EnforcesCacheCoherency),
            ["pgsize_bitmap"] = Hex(domain.PgsizeBitmap),
        };
        Node(GraphNodeKind.Domain, id, Key(domain.Id), $"domain {Dec(domain.Id)} ({domain.Type.SysfsName()})", null, owner, props);
        return id;
    }

    private string AddBusDevice(SimDevice d)
    {
        string id = "bus:" + d.Name;
        if (!_seen.Add(d))
        {
            return id;
        }

        var props = new GraphProperties
        {
            ["bus"] = d.Bus?.Name ?? "none",
            ["driver"] = d.Driver?.Name ?? "none",
            ["refcount"] = Dec(d.ReferenceCount),
        };
        string label = d.Name;
        if (d is PciDevice pci)
        {
            string ids = $"{pci.Identity.Vendor:x4}:{pci.Identity.Device:x4}";
            props["id"] = ids;
            label = $"{d.Name} [{ids}]";
        }
        else if (d is MdevDevice mdev)
        {
            props["mdev_type"] = mdev.Type.ToString();
            props["parent"] = mdev.MdevParent.Dev.Name;
        }

        if (d.DriverOverride is { } o)
        {
            props["driver_override"] = o;
        }

        if (d.IommuGroup is { } ig)
        {
            props["iommu_group"] = Dec(ig.Id);
        }

        Node(GraphNodeKind.BusDevice, id, (d is PciDevice ? "0" : "1") + d.Name, $"{label} ({d.Driver?.Name ?? "no driver"})", d.ReferenceCount, null, props);
        return id;
    }

    // ---- Others.

    private string AddEventFd(EventFdContext ctx)
    {
        string id = "eventfd:" + Dec(ctx.Id);
        if (!_seen.Add(ctx))
        {
            return id;
        }

        var props = new GraphProperties
        {
            ["refcount"] = Dec(ctx.ReferenceCountValue),
            ["count"] = Dec((long)ctx.Count),
        };
        Node(GraphNodeKind.Other, id, "0" + Key(ctx.Id), $"eventfd_ctx {Dec(ctx.Id)}", ctx.ReferenceCountValue, null, props);
        return id;
    }

    private string AddKvm(KvmVm vm)
    {
        string id = "kvm:" + Dec(vm.Id);
        if (!_seen.Add(vm))
        {
            return id;
        }

        var props = new GraphProperties
        {
            ["users_count"] = Dec(vm.UsersCount),
            ["assigned_devices"] = Dec(vm.AssignedDeviceCount),
            ["destroyed"] = Yes(vm.IsDestroyed),
        };
        Node(GraphNodeKind.Other, id, "1" + Key(vm.Id), $"kvm {Dec(vm.Id)}", vm.UsersCount, null, props);
        return id;
    }
}
