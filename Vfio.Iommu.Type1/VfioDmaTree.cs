// The container's dma_list: the kernel's rb-tree of vfio_dma keyed by IOVA range
// (ranges never overlap), here an intrusive red-black tree whose nodes are the VfioDma
// objects themselves, so linking and unlinking allocate nothing. Lookups are O(log n):
// vfio_find_dma (any mapping intersecting a range) and vfio_find_dma_first_node (the
// lowest one). Guarded by the container's lock.

namespace Vfio.Iommu.Type1;

/// <summary>The intrusive red-black tree of a container's mappings, ordered by IOVA.</summary>
internal sealed class VfioDmaTree
{
    private VfioDma? _root;

    /// <summary>Mappings in the tree.</summary>
    public int Count { get; private set; }

    /// <summary>The lowest mapping, or null.</summary>
    public VfioDma? First()
    {
        VfioDma? n = _root;
        if (n is null)
        {
            return null;
        }

        while (n.Left is not null)
        {
            n = n.Left;
        }

        return n;
    }

    /// <summary>rb_next(): the mapping after <paramref name="n"/> in IOVA order, or null.</summary>
    public static VfioDma? Next(VfioDma n)
    {
        if (n.Right is not null)
        {
            n = n.Right;
            while (n.Left is not null)
            {
                n = n.Left;
            }

            return n;
        }

        VfioDma? p = n.Parent;
        while (p is not null && n == p.Right)
        {
            n = p;
            p = p.Parent;
        }

        return p;
    }

    /// <summary>rb_prev(): the mapping before <paramref name="n"/> in IOVA order, or null.</summary>
    public static VfioDma? Prev(VfioDma n)
    {
        if (n.Left is not null)
        {
            n = n.Left;
            while (n.Right is not null)
            {
                n = n.Right;
            }

            return n;
        }

        VfioDma? p = n.Parent;
        while (p is not null && n == p.Left)
        {
            n = p;
            p = p.Parent;
        }

        return p;
    }

    /// <summary>vfio_find_dma(): any mapping intersecting [<paramref name="start"/>, <paramref name="last"/>], or null.</summary>
    public VfioDma? Find(ulong start, ulong last)
    {
        VfioDma? n = _root;
        while (n is not null)
        {
            if (last < n.Iova)
            {
                n = n.Left;
            }
            else if (n.Size == 0 || start > n.Last)
            {
                n = n.Right;
            }
            else
            {
                return n;
            }
        }

        return null;
    }

    /// <summary>
    /// vfio_find_dma_first_node(): the lowest mapping that ends after <paramref name="start"/>
    /// and begins at or before <paramref name="last"/>, or null.
    /// </summary>
    public VfioDma? FindFirst(ulong start, ulong last)
    {
        VfioDma? n = _root;
        VfioDma? res = null;
        while (n is not null)
        {
            if (n.Size != 0 && start <= n.Last)
            {
                res = n;
                if (start >= n.Iova)
                {
                    break;
                }

                n = n.Left;
            }
            else
            {
                n = n.Right;
            }
        }

        return res is not null && res.Iova > last ? null : res;
    }

    /// <summary>vfio_link_dma(): inserts <paramref name="dma"/> (it must not overlap any mapping).</summary>
    public void Insert(VfioDma dma)
    {
        VfioDma? parent = null;
        VfioDma? n = _root;
        while (n is not null)
        {
            parent = n;
            n = dma.Iova < n.Iova ? n.Left : n.Right;
        }

        dma.Parent = parent;
        dma.Left = dma.Right = null;
        dma.Red = true;
        if (parent is null)
        {
            _root = dma;
        }
        else if (dma.Iova < parent.Iova)
        {
            parent.Left = dma;
        }
        else
        {
            parent.Right = dma;
        }

        Count++;
        InsertFixup(dma);
    }

    private void InsertFixup(VfioDma z)
    {
        while (z.Parent is { Red: true } p)
        {
            VfioDma g = p.Parent!;
            if (p == g.Left)
            {
                VfioDma? u = g.Right;
                if (u is { Red: true })
                {
                    p.Red = false;
                    u.Red = false;
                    g.Red = true;
                    z = g;
                    continue;
                }

                if (z == p.Right)
                {
                    z = p;
                    RotateLeft(z);
                    p = z.Parent!;
                }

                p.Red = false;
                g.Red = true;
                RotateRight(g);
            }
            else
            {
                VfioDma? u = g.Left;
                if (u is { Red: true })
                {
                    p.Red = false;
                    u.Red = false;
                    g.Red = true;
                    z = g;
                    continue;
                }

                if (z == p.Left)
                {
                    z = p;
                    RotateRight(z);
                    p = z.Parent!;
                }

                p.Red = false;
                g.Red = true;
                RotateLeft(g);
            }
        }

        _root!.Red = false;
    }

    /// <summary>vfio_unlink_dma(): removes <paramref name="z"/> from the tree.</summary>
    public void Remove(VfioDma z)
    {
        VfioDma? x;
        VfioDma? xParent;
        bool removedRed;
        if (z.Left is null || z.Right is null)
        {
            x = z.Left ?? z.Right;
            xParent = z.Parent;
            removedRed = z.Red;
            Transplant(z, x);
        }
        else
        {
            VfioDma y = z.Right;
            while (y.Left is not null)
            {
                y = y.Left;
            }

            removedRed = y.Red;
            x = y.Right;
            if (y.Parent == z)
            {
                xParent = y;
            }
            else
            {
                xParent = y.Parent;
                Transplant(y, y.Right);
                y.Right = z.Right;
                y.Right.Parent = y;
            }

            Transplant(z, y);
            y.Left = z.Left;
            y.Left.Parent = y;
            y.Red = z.Red;
        }

        z.Left = z.Right = z.Parent = null;
        Count--;
        if (!removedRed)
        {
            RemoveFixup(x, xParent);
        }
    }

    private void RemoveFixup(VfioDma? x, VfioDma? parent)
    {
        while (x != _root && (x is null || !x.Red))
        {
            if (x == parent!.Left)
            {
                VfioDma w = parent.Right!;
                if (w.Red)
                {
                    w.Red = false;
                    parent.Red = true;
                    RotateLeft(parent);
                    w = parent.Right!;
                }

                if ((w.Left is null || !w.Left.Red) && (w.Right is null || !w.Right.Red))
                {
                    w.Red = true;
                    x = parent;
                    parent = x.Parent;
                }
                else
                {
                    if (w.Right is null || !w.Right.Red)
                    {
                        w.Left!.Red = false;
                        w.Red = true;
                        RotateRight(w);
                        w = parent.Right!;
                    }

                    w.Red = parent.Red;
                    parent.Red = false;
                    w.Right!.Red = false;
                    RotateLeft(parent);
                    x = _root;
                    parent = null;
                }
            }
            else
            {
                VfioDma w = parent.Left!;
                if (w.Red)
                {
                    w.Red = false;
                    parent.Red = true;
                    RotateRight(parent);
                    w = parent.Left!;
                }

                if ((w.Right is null || !w.Right.Red) && (w.Left is null || !w.Left.Red))
                {
                    w.Red = true;
                    x = parent;
                    parent = x.Parent;
                }
                else
                {
                    if (w.Left is null || !w.Left.Red)
                    {
                        w.Right!.Red = false;
                        w.Red = true;
                        RotateLeft(w);
                        w = parent.Left!;
                    }

                    w.Red = parent.Red;
                    parent.Red = false;
                    w.Left!.Red = false;
                    RotateRight(parent);
                    x = _root;
                    parent = null;
                }
            }
        }

        if (x is not null)
        {
            x.Red = false;
        }
    }

    private void Transplant(VfioDma u, VfioDma? v)
    {
        if (u.Parent is null)
        {
            _root = v;
        }
        else if (u == u.Parent.Left)
        {
            u.Parent.Left = v;
        }
        else
        {
            u.Parent.Right = v;
        }

        if (v is not null)
        {
            v.Parent = u.Parent;
        }
    }

    private void RotateLeft(VfioDma x)
    {
        VfioDma y = x.Right!;
        x.Right = y.Left;
        if (y.Left is not null)
        {
            y.Left.Parent = x;
        }

        Transplant(x, y);
        y.Left = x;
        x.Parent = y;
    }

    private void RotateRight(VfioDma x)
    {
        VfioDma y = x.Left!;
        x.Left = y.Right;
        if (y.Right is not null)
        {
            y.Right.Parent = x;
        }

        Transplant(x, y);
        y.Right = x;
        x.Parent = y;
    }

    /// <summary>Checks order, colours and parent links (for the invariant checker); null when sound.</summary>
    public string? Check()
    {
        if (_root is { Red: true })
        {
            return "dma tree: red root";
        }

        int count = 0;
        string? err = null;
        CheckNode(_root, null, ref count, ref err);
        if (err is null && count != Count)
        {
            err = $"dma tree: {count} nodes reachable but Count is {Count}";
        }

        VfioDma? prev = null;
        for (VfioDma? n = First(); n is not null && err is null; n = Next(n))
        {
            if (prev is not null && (prev.Size == 0 || prev.Last >= n.Iova))
            {
                err = $"dma tree: {prev} overlaps or precedes {n}";
            }

            prev = n;
        }

        return err;
    }

    private static int CheckNode(VfioDma? n, VfioDma? parent, ref int count, ref string? err)
    {
        if (n is null)
        {
            return 1;
        }

        count++;
        if (n.Parent != parent)
        {
            err ??= $"dma tree: bad parent link at {n}";
        }

        if (n.Red && ((n.Left?.Red ?? false) || (n.Right?.Red ?? false)))
        {
            err ??= $"dma tree: red node {n} has a red child";
        }

        int l = CheckNode(n.Left, n, ref count, ref err);
        int r = CheckNode(n.Right, n, ref count, ref err);
        if (l != r)
        {
            err ??= $"dma tree: black heights differ under {n}";
        }

        return l + (n.Red ? 0 : 1);
    }
}
